import { describe, expect, it } from "vitest";
import { ChatFormatter, createTokenizerFromGGUF } from "../src/index.js";
import { fixtureMeta } from "./fixtures.js";

const tok = createTokenizerFromGGUF(fixtureMeta("models/stories260K.gguf"));
const messages = [
  { role: "user", content: "Hi!" },
  { role: "assistant", content: "Hello." },
];
const chatml =
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

describe("ChatFormatter", () => {
  it("renders with and without the generation prompt (template and plain format)", () => {
    const f = new ChatFormatter(chatml, tok);
    expect(f.render(messages.slice(0, 1))).toBe("<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
    expect(f.render(messages, { addGenerationPrompt: false })).toBe(
      "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n",
    );
    const plain = new ChatFormatter(undefined, tok);
    expect(plain.fromModel).toBe(false);
    expect(plain.render(messages.slice(0, 1))).toBe("user: Hi!\nassistant:");
    expect(plain.render(messages, { addGenerationPrompt: false })).toBe("user: Hi!\nassistant: Hello.");
  });

  it("addSpacePrefix: false encodes text that continues earlier text", () => {
    expect(tok.addSpacePrefix).toBe(true);
    const whole = tok.encode("Once upon", { addBos: false });
    const head = tok.encode("Once", { addBos: false });
    const tail = tok.encode(" upon", { addBos: false, addSpacePrefix: false });
    expect([...head, ...tail]).toEqual(whole);
    expect(tok.encode(" upon", { addBos: false })).not.toEqual(tail); // default: "▁▁upon"
  });
});
