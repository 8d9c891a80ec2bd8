import { describe, expect, it } from "vitest";
import {
  createTokenizerFromHF,
  ggufMetadataFromHFTokenizer,
  hfTokenizerFromGGUFMetadata,
  TokenizerError,
} from "../src/index.js";
import { fixtureMeta, vocabCases } from "./fixtures.js";

describe("HuggingFace tokenizer.json bridge", () => {
  for (const name of ["ggml-vocab-llama-spm", "ggml-vocab-gpt-2"]) {
    it(`${name}: GGUF → tokenizer.json → tokenizer reproduces every fixture case`, () => {
      const { tokenizerJson, tokenizerConfig } = hfTokenizerFromGGUFMetadata(
        fixtureMeta(`tokenizers/${name}.gguf`),
      );
      // Through JSON text, as a file on disk would be.
      const tok = createTokenizerFromHF(
        JSON.parse(JSON.stringify(tokenizerJson)),
        JSON.parse(JSON.stringify(tokenizerConfig)),
      );
      for (const c of vocabCases(`${name}.gguf`)) {
        expect(tok.encode(c.text, { addBos: false }), JSON.stringify(c.text)).toEqual(c.ids);
      }
    });
  }

  it("maps special tokens, BOS/EOS and the chat template", () => {
    const meta = fixtureMeta("models/stories260K.gguf");
    const { tokenizerJson, tokenizerConfig } = hfTokenizerFromGGUFMetadata({
      ...meta,
      "tokenizer.chat_template": "{{ x }}",
    });
    expect(tokenizerConfig).toMatchObject({
      bos_token: "<s>",
      eos_token: "</s>",
      unk_token: "<unk>",
      add_bos_token: true,
    });
    const back = ggufMetadataFromHFTokenizer(tokenizerJson, tokenizerConfig);
    expect(back["tokenizer.ggml.bos_token_id"]).toBe(1);
    expect(back["tokenizer.ggml.eos_token_id"]).toBe(2);
    expect(back["tokenizer.chat_template"]).toBe("{{ x }}");
    const tok = createTokenizerFromHF(tokenizerJson, tokenizerConfig);
    expect(tok.encode("Once upon a time", { addBos: true })).toEqual([1, 403, 407, 261, 378]);
  });

  it("detects llama3 and qwen2 split patterns and rejects unknown ones", () => {
    const base = hfTokenizerFromGGUFMetadata({
      ...fixtureMeta("tokenizers/ggml-vocab-gpt-2.gguf"),
      "tokenizer.ggml.pre": "llama3",
    });
    expect(ggufMetadataFromHFTokenizer(base.tokenizerJson)["tokenizer.ggml.pre"]).toBe("llama3");
    const json = JSON.parse(JSON.stringify(base.tokenizerJson));
    json.pre_tokenizer.pretokenizers[0].pattern.Regex = "[a-z]+";
    expect(() => ggufMetadataFromHFTokenizer(json)).toThrow(TokenizerError);
    expect(() => ggufMetadataFromHFTokenizer({ model: { type: "WordPiece", vocab: {} } })).toThrow(
      /only BPE/,
    );
  });
});
