import { describe, expect, it } from "vitest";
import { createTokenizerFromGGUF } from "../src/index.js";
import { fixtureMeta, vocabCases } from "./fixtures.js";

describe.each([
  { name: "ggml-vocab-llama-spm.gguf", model: "llama" },
  { name: "ggml-vocab-gpt-2.gguf", model: "gpt2" },
])("$name", ({ name, model }) => {
  const tok = createTokenizerFromGGUF(fixtureMeta(`tokenizers/${name}`));
  const cases = vocabCases(name);

  it("has the expected shape", () => {
    expect(tok.model).toBe(model);
    expect(cases.length).toBe(46);
  });

  it.each(cases.map((c, i) => ({ i, ...c })))("case $i encodes to the reference ids", ({ text, ids }) => {
    expect(tok.encode(text, { addBos: false })).toEqual(ids);
  });

  it.each(cases.map((c, i) => ({ i, ...c })))("case $i decodes back to the input", ({ text, ids }) => {
    expect(tok.decode(ids, { cleanSpaces: false })).toBe(text);
  });
});
