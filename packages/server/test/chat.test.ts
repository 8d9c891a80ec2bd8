import { openModelFile } from "@ryzanstein/engine";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";
import { describe, expect, it } from "vitest";
import { ChatFormatter } from "../src/index.js";
import { storiesPath } from "./helpers.js";

const tokenizer = createTokenizerFromGGUF(openModelFile(storiesPath).metadata);
const messages = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi!" },
];

describe("chat templates", () => {
  it("renders the model's Jinja template with the generation prompt", () => {
    const chatml =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    const f = new ChatFormatter(chatml, tokenizer);
    expect(f.fromModel).toBe(true);
    expect(f.render(messages)).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("passes bos_token and falls back to plain text without a template or with a broken one", () => {
    expect(new ChatFormatter("{{ bos_token }}{{ messages[0].content }}", tokenizer).render(messages)).toBe(
      `${tokenizer.tokenText(tokenizer.bosId as number)}Be brief.`,
    );
    const plain = "system: Be brief.\nuser: Hi!\nassistant:";
    expect(new ChatFormatter(undefined, tokenizer).render(messages)).toBe(plain);
    const broken = new ChatFormatter("{% for %}", tokenizer);
    expect(broken.fromModel).toBe(false);
    expect(broken.render(messages)).toBe(plain);
  });
});
