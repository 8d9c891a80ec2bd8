import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { isAbsolute, resolve } from "node:path";
import { loadModel } from "@ryzanstein/engine";
import { disposeLlamaCpp, llamaCppGreedy } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { modelPath } from "../src/index.js";

afterAll(() => disposeLlamaCpp());

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

  it("llama.cpp loads it and picks the same greedy tokens as our engine", async () => {
    const model = await loadModel(modelPath, { threads: 2, worker: false });
    const prompt = model.tokenizer.encode("And God said");
    const trace = await llamaCppGreedy(modelPath, prompt, 16, { topK: 2, threads: 2 });
    const seq = [...prompt, ...trace.steps.map((s) => s.token)];
    const logits = await model.logits(seq.slice(0, -1));
    const V = model.config.vocabSize;
    await model.dispose();
    let compared = 0;
    for (let s = 0; s < 16; s++) {
      if (trace.steps[s].top2Gap < 0.4) continue; // Q8_0 activations: see docs/testing.md
      compared++;
      const row = logits.subarray((prompt.length - 1 + s) * V, (prompt.length + s) * V);
      let best = 0;
      for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
      expect(best).toBe(trace.steps[s].token);
    }
    expect(compared).toBeGreaterThan(4);
  });
});
