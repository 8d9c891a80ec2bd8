import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { isAbsolute, resolve } from "node:path";
import { loadModel } from "@ryzanstein/engine";
import { describe, expect, it } from "vitest";
import { modelPath } from "../src/index.js";

describe("@ryzanstein/default-model", () => {
  it("modelPath is an absolute path to the shipped GGUF, from ESM and CJS builds", () => {
    expect(isAbsolute(modelPath)).toBe(true);
    expect(existsSync(modelPath)).toBe(true);
    const require = createRequire(import.meta.url);
    const cjs = require(resolve(__dirname, "../dist/index.cjs")) as { modelPath: string };
    expect(cjs.modelPath).toBe(modelPath);
  });

  it("loads in the engine and continues a prompt in the style of the King James Bible", async () => {
    const model = await loadModel(modelPath, { threads: 2, worker: false });
    expect(model.config.architecture).toBe("llama");
    let text = "";
    for await (const t of model.generate("In the beginning", { maxTokens: 24, temperature: 0 }))
      text += t.text;
    await model.dispose();
    expect(text.length).toBeGreaterThan(20);
    // greedy text from a model trained on the KJV uses its vocabulary
    expect(text).toMatch(/\b(the|and|of|God|LORD|unto)\b/);
  });
});
