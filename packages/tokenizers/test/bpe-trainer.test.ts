import { describe, expect, it } from "vitest";
import { bpeMetadata, createTokenizerFromGGUF, trainBpe } from "../src/index.js";

const text =
  "the lamb and the lion; the lamb of God.\nAnd the LORD said, Let there be light: and there was light.\n".repeat(
    20,
  );

describe("byte-level BPE trainer", () => {
  it("learns merges by frequency, deterministically", () => {
    const a = trainBpe(text, { vocabSize: 280 });
    const b = trainBpe(text, { vocabSize: 280 });
    expect(a).toEqual(b);
    expect(a.tokens.length).toBe(280);
    expect(a.merges.length).toBe(280 - 256 - 1);
    expect(a.tokens[a.eosId]).toBe("<|endoftext|>");
    expect(a.tokenTypes[a.eosId]).toBe(3);
    expect(a.tokens).toContain("Ġthe"); // GPT-2 byte characters: Ġ is the space
  });

  it("round-trips any text through the tokenizer it describes, and compresses", () => {
    const bpe = trainBpe(text, { vocabSize: 320 });
    const tok = createTokenizerFromGGUF(bpeMetadata(bpe));
    for (const s of [text, "unseen wörds ✓ 123\n\tand tabs", ""]) {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
    expect(tok.encode(text).length).toBeLessThan(Buffer.byteLength(text) / 3);
    expect(tok.encode("the lamb")[0]).not.toBe(tok.bosId); // no BOS added
  });

  it("rejects a vocabulary smaller than the byte alphabet", () => {
    expect(() => trainBpe(text, { vocabSize: 100 })).toThrow(RangeError);
  });
});
