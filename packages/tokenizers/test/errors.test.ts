import { describe, expect, it } from "vitest";
import { createTokenizerFromGGUF, TokenizerError } from "../src/index.js";

const BYTES = ["a", "b", "c", "ab", "abc"];
const tinyGpt2 = (extra: Record<string, unknown> = {}) => ({
  "tokenizer.ggml.model": "gpt2",
  "tokenizer.ggml.pre": "gpt-2",
  "tokenizer.ggml.tokens": BYTES,
  "tokenizer.ggml.merges": ["a b", "ab c"],
  ...extra,
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TokenizerError);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message.length).toBeGreaterThan(10);
    return (e as TokenizerError).code;
  }
  return undefined;
}

describe("a tiny synthetic gpt2 vocabulary", () => {
  it("merges by rank", () => {
    const tok = createTokenizerFromGGUF(tinyGpt2());
    expect(tok.encode("abc")).toEqual([4]);
    expect(tok.encode("abab")).toEqual([3, 3]);
    expect(tok.encode("cab")).toEqual([2, 3]);
    expect(tok.preTokenizer).toBe("gpt2");
  });
  it("falls back to the 'default' pre-tokenizer when tokenizer.ggml.pre is absent", () => {
    const m = tinyGpt2();
    delete (m as Record<string, unknown>)["tokenizer.ggml.pre"];
    expect(createTokenizerFromGGUF(m).preTokenizer).toBe("default");
  });
});

describe("errors", () => {
  it.each([
    ["missing model", {}, "MISSING_METADATA"],
    [
      "unknown model",
      { "tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": BYTES },
      "UNSUPPORTED_TOKENIZER",
    ],
    ["missing tokens", { "tokenizer.ggml.model": "llama" }, "MISSING_METADATA"],
    ["tokens not an array", { "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": 42 }, "BAD_METADATA"],
    [
      "non-string token",
      { "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a", 1] },
      "BAD_METADATA",
    ],
    [
      "duplicate token",
      { "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a", "b", "a"] },
      "BAD_METADATA",
    ],
    [
      "short scores",
      {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": ["a", "b", "c"],
        "tokenizer.ggml.scores": new Float32Array(2),
      },
      "BAD_METADATA",
    ],
    [
      "short token types",
      {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": ["a", "b", "c"],
        "tokenizer.ggml.token_type": [1],
      },
      "BAD_METADATA",
    ],
    ["model not a string", { "tokenizer.ggml.model": 3, "tokenizer.ggml.tokens": BYTES }, "BAD_METADATA"],
    ["unknown pre-tokenizer", tinyGpt2({ "tokenizer.ggml.pre": "no-such-pre" }), "UNSUPPORTED_PRE_TOKENIZER"],
    ["missing merges", tinyGpt2({ "tokenizer.ggml.merges": undefined }), "MISSING_METADATA"],
    ["merge with unknown token", tinyGpt2({ "tokenizer.ggml.merges": ["a b", "ab zz"] }), "BAD_METADATA"],
    ["malformed merge", tinyGpt2({ "tokenizer.ggml.merges": ["ab"] }), "BAD_METADATA"],
    ["add_bos without a BOS token", tinyGpt2({ "tokenizer.ggml.add_bos_token": true }), "BAD_METADATA"],
    ["bool key of the wrong type", tinyGpt2({ "tokenizer.ggml.add_bos_token": "yes" }), "BAD_METADATA"],
  ])("%s → %s", (_name, meta, code) => {
    expect(codeOf(() => createTokenizerFromGGUF(meta as Record<string, unknown>))).toBe(code);
  });

  it("rejects token ids outside the vocabulary", () => {
    const tok = createTokenizerFromGGUF(tinyGpt2());
    expect(codeOf(() => tok.tokenToPiece(99))).toBe("INVALID_TOKEN");
    expect(codeOf(() => tok.decode([0, -1]))).toBe("INVALID_TOKEN");
    expect(codeOf(() => tok.tokenType(1.5))).toBe("INVALID_TOKEN");
    expect(codeOf(() => tok.encode("a", { addBos: true }))).toBe("INVALID_TOKEN");
  });

  it("TokenizerError carries its code", () => {
    const e = new TokenizerError("BAD_METADATA", "x");
    expect(e.code).toBe("BAD_METADATA");
    expect(e.name).toBe("TokenizerError");
    expect(e.message).toContain("BAD_METADATA");
  });
});
