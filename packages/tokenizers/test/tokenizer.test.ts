import { describe, expect, it } from "vitest";
import { createTokenizerFromGGUF, StreamingDecoder, TokenType } from "../src/index.js";
import { fixtureMeta } from "./fixtures.js";

const stories = () => fixtureMeta("models/stories260K.gguf");
const llamaSpm = () => fixtureMeta("tokenizers/ggml-vocab-llama-spm.gguf");
const gpt2 = () => fixtureMeta("tokenizers/ggml-vocab-gpt-2.gguf");

/** stories260K's vocabulary plus a user-defined and two chat control tokens. */
function storiesWithExtras() {
  const m = { ...stories() };
  const tokens = [...(m["tokenizer.ggml.tokens"] as string[]), "<|user|>", "<|im_end|>", "<|im_start|>"];
  const types = [...(m["tokenizer.ggml.token_type"] as Int32Array), 4, 3, 3];
  const scores = [...(m["tokenizer.ggml.scores"] as Float32Array), 0, 0, 0];
  return {
    meta: {
      ...m,
      "tokenizer.ggml.tokens": tokens,
      "tokenizer.ggml.token_type": types,
      "tokenizer.ggml.scores": scores,
    },
    user: tokens.length - 3,
    imEnd: tokens.length - 2,
    imStart: tokens.length - 1,
  };
}

describe("stories260K (llama SPM, 512 tokens)", () => {
  const tok = createTokenizerFromGGUF(stories());

  it("reads the vocabulary and llama defaults", () => {
    expect(tok.model).toBe("llama");
    expect(tok.preTokenizer).toBeNull();
    expect(tok.vocabSize).toBe(512);
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.unkId).toBe(0);
    expect(tok.padId).toBeNull(); // 0xFFFFFFFF in the file is out of range
    expect(tok.addBos).toBe(true); // no add_bos_token key: llama adds BOS
    expect(tok.addEos).toBe(false);
    expect(tok.addSpacePrefix).toBe(true);
  });

  it('encodes "Once upon a time" as BOS + 4 tokens', () => {
    const ids = tok.encode("Once upon a time");
    expect(ids).toEqual([1, 403, 407, 261, 378]);
    expect(ids.map((i) => tok.tokenText(i))).toEqual(["<s>", "▁Once", "▁upon", "▁a", "▁time"]);
    expect(tok.encode("Once upon a time", { addBos: false })).toEqual([403, 407, 261, 378]);
    expect(tok.encode("")).toEqual([1]);
    expect(tok.encode("", { addBos: false })).toEqual([]);
  });

  it("decodes with and without specials, stripping the prefix space", () => {
    const ids = tok.encode("Once upon a time");
    expect(tok.decode(ids, { skipSpecial: true })).toBe("Once upon a time");
    expect(tok.decode(ids)).toBe("<s> Once upon a time");
    expect(tok.decode(ids.slice(1))).toBe("Once upon a time");
    expect(tok.decode(ids.slice(1), { stripLeadingSpace: false })).toBe(" Once upon a time");
  });

  it("uses byte fallback tokens for characters outside the vocabulary and decodes them", () => {
    const ids = tok.encode("Lily 🦙\nok", { addBos: false });
    const text = ids.map((i) => tok.tokenText(i));
    expect(text).toContain("<0xF0>");
    expect(text).toContain("<0x0A>");
    expect(ids.filter((i) => tok.tokenType(i) === TokenType.Byte).length).toBe(5);
    expect(Array.from(tok.tokenToPiece(tok.tokenId("<0x0A>") as number))).toEqual([10]);
    expect(tok.decode(ids)).toBe("Lily 🦙\nok");
  });

  it("round-trips the golden story text", () => {
    const golden =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
    expect(tok.decode(tok.encode(golden), { skipSpecial: true })).toBe(golden);
  });

  it("knows token types, scores and EOG", () => {
    expect(tok.tokenType(0)).toBe(TokenType.Unknown);
    expect(tok.tokenType(1)).toBe(TokenType.Control);
    expect(tok.tokenType(3)).toBe(TokenType.Byte);
    expect(tok.tokenType(403)).toBe(TokenType.Normal);
    expect(typeof tok.tokenScore(403)).toBe("number");
    expect(tok.isEog(2)).toBe(true);
    expect(tok.isEog(1)).toBe(false);
    expect(tok.eogIds).toEqual([2]);
    expect(tok.isSpecial(1)).toBe(true);
    expect(tok.isSpecial(403)).toBe(false);
  });

  it("accepts plain arrays and bigint ids in the metadata", () => {
    const m = stories();
    const plain = createTokenizerFromGGUF({
      ...m,
      "tokenizer.ggml.scores": Array.from(m["tokenizer.ggml.scores"] as Float32Array),
      "tokenizer.ggml.token_type": Array.from(m["tokenizer.ggml.token_type"] as Int32Array),
      "tokenizer.ggml.bos_token_id": 1n,
      "tokenizer.ggml.eos_token_id": 2n,
    });
    expect(plain.encode("Once upon a time")).toEqual(tok.encode("Once upon a time"));
  });

  it("honours add_bos_token / add_eos_token / add_space_prefix", () => {
    const t = createTokenizerFromGGUF({
      ...stories(),
      "tokenizer.ggml.add_bos_token": false,
      "tokenizer.ggml.add_eos_token": true,
    });
    expect(t.encode("Once")).toEqual([403, 2]);
    const noPrefix = createTokenizerFromGGUF({ ...stories(), "tokenizer.ggml.add_space_prefix": false });
    expect(noPrefix.encode("Once", { addBos: false })).not.toEqual([403]);
    expect(noPrefix.decode(noPrefix.encode(" Once", { addBos: false }))).toBe(" Once");
  });
});

describe("special and user-defined tokens (SPM)", () => {
  const x = storiesWithExtras();
  const tok = createTokenizerFromGGUF(x.meta);

  it("always matches user-defined tokens and decodes them as raw text", () => {
    const ids = tok.encode("Lily<|user|>ran", { addBos: false });
    expect(ids).toContain(x.user);
    expect(tok.tokenType(x.user)).toBe(TokenType.UserDefined);
    // as in llama.cpp, the text after a special fragment gets the add-space-prefix space again
    expect(tok.decode(ids)).toBe("Lily<|user|> ran");
    expect(tok.decode(ids, { skipSpecial: true })).toBe("Lily<|user|> ran");
    expect(tok.decode([x.user])).toBe("<|user|>");
  });

  it("matches control tokens only with parseSpecial, and adds the space prefix after them", () => {
    const text = "<|im_start|>Once<|im_end|>";
    const plain = tok.encode(text, { addBos: false });
    expect(plain).not.toContain(x.imEnd);
    expect(tok.decode(plain)).toBe(text);
    const parsed = tok.encode(text, { addBos: false, parseSpecial: true });
    expect(parsed).toEqual([x.imStart, 403, x.imEnd]);
    expect(tok.decode(parsed)).toBe("<|im_start|> Once<|im_end|>");
    expect(tok.decode(parsed, { skipSpecial: true })).toBe(" Once");
  });

  it("marks <|im_end|> as end of generation and EOT", () => {
    expect(tok.isEog(x.imEnd)).toBe(true);
    expect(tok.eotId).toBe(x.imEnd);
    expect(tok.isEog(x.imStart)).toBe(false);
    expect(tok.eogIds).toEqual([2, x.imEnd]);
  });
});

describe("gpt-2 byte-level BPE", () => {
  const tok = createTokenizerFromGGUF(gpt2());

  it("reads ids and flags", () => {
    expect(tok.model).toBe("gpt2");
    expect(tok.preTokenizer).toBe("gpt2");
    expect(tok.vocabSize).toBe(50257);
    expect(tok.bosId).toBe(50256);
    expect(tok.eosId).toBe(50256);
    expect(tok.addBos).toBe(false);
    expect(tok.addSpacePrefix).toBe(false);
    expect(tok.isEog(50256)).toBe(true);
  });

  it("parses <|endoftext|> only with parseSpecial", () => {
    expect(tok.encode("Hello<|endoftext|>", { parseSpecial: true })).toEqual([15496, 50256]);
    expect(tok.encode("Hello<|endoftext|>")).not.toContain(50256);
    expect(tok.encode("Hi", { addBos: true })).toEqual([50256, 17250]);
    expect(tok.decode([15496, 50256])).toBe("Hello<|endoftext|>");
    expect(tok.decode([15496, 50256], { skipSpecial: true })).toBe("Hello");
  });

  it("applies llama.cpp clean_spaces by default", () => {
    const ids = tok.encode("Hello , world ! I 'm here ' ok");
    expect(tok.decode(ids, { cleanSpaces: false })).toBe("Hello , world ! I 'm here ' ok");
    expect(tok.decode(ids)).toBe("Hello, world! I'm here'ok");
  });

  it("returns the bytes of a piece", () => {
    expect(new TextDecoder().decode(tok.tokenToPiece(995))).toBe(" world");
  });
});

describe("StreamingDecoder", () => {
  it("holds back multi-byte UTF-8 split across byte tokens", () => {
    const tok = createTokenizerFromGGUF(stories());
    const ids = tok.encode("a 🦙 é", { addBos: false });
    const dec = new StreamingDecoder(tok);
    const outputs = ids.map((id) => dec.push(id));
    const bytes = ["<0xF0>", "<0x9F>", "<0xA6>"].map((t) => tok.tokenId(t));
    // the first three bytes of the emoji print nothing, the fourth prints it whole
    for (const b of bytes) expect(outputs[ids.indexOf(b as number)]).toBe("");
    expect(outputs[ids.indexOf(tok.tokenId("<0x99>") as number)]).toBe("🦙");
    expect(outputs.join("") + dec.flush()).toBe(" a 🦙 é");
  });

  it("skips specials, optionally strips the prefix space, and flushes incomplete bytes as U+FFFD", () => {
    const tok = createTokenizerFromGGUF(stories());
    const dec = new StreamingDecoder(tok, { stripLeadingSpace: true });
    expect(dec.pushAll(tok.encode("Once upon"))).toBe("Once upon");
    expect(dec.push(2)).toBe("");
    expect(dec.push(tok.tokenId("<0xF0>") as number)).toBe("");
    expect(dec.flush()).toBe("\uFFFD");
  });

  it("works with byte-level BPE pieces that split a character", () => {
    const tok = createTokenizerFromGGUF(gpt2());
    const ids = tok.encode("🦙 llama");
    const dec = new StreamingDecoder(tok);
    const outs = ids.map((id) => dec.push(id));
    expect(outs.join("") + dec.flush()).toBe("🦙 llama");
    expect(outs.some((o) => o === "")).toBe(true); // the emoji spans several tokens
  });
});

describe("performance", () => {
  it("SPM encodes long text and a long unbroken word quickly", () => {
    const tok = createTokenizerFromGGUF(llamaSpm());
    const text = "The quick brown fox jumps over the lazy dog. ".repeat(2000);
    const t0 = performance.now();
    const ids = tok.encode(text, { addBos: false });
    const word = tok.encode("ab".repeat(20000), { addBos: false });
    const ms = performance.now() - t0;
    expect(tok.decode(ids)).toBe(text);
    expect(tok.decode(word)).toBe("ab".repeat(20000));
    expect(ms).toBeLessThan(5000);
  });

  it("BPE encodes long text and a long unbroken word quickly", () => {
    const tok = createTokenizerFromGGUF(gpt2());
    const text = "The quick brown fox jumps over the lazy dog. ".repeat(2000);
    const t0 = performance.now();
    const ids = tok.encode(text);
    const word = tok.encode("ab".repeat(20000));
    const ms = performance.now() - t0;
    expect(tok.decode(ids, { cleanSpaces: false })).toBe(text);
    expect(tok.decode(word)).toBe("ab".repeat(20000));
    expect(ms).toBeLessThan(5000);
  });
});
