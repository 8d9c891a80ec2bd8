import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGMLType } from "@ryzanstein/core-tensor";
import { loadModel, openModelFile } from "@ryzanstein/engine";
import { disposeLlamaCpp, fixturesDir, llamaCppDetokenize, llamaCppGreedy } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { quantizeModel, writeQuantizedModel } from "../src/index.js";

const storiesPath = join(fixturesDir(), "models/stories260K.gguf");
const dir = mkdtempSync(join(tmpdir(), "rz-quant-interop-"));
afterAll(async () => {
  await disposeLlamaCpp();
  rmSync(dir, { recursive: true, force: true });
});

describe("stories260K quantized by us loads in llama.cpp (node-llama-cpp)", () => {
  for (const [name, type] of [
    ["Q8_0", GGMLType.Q8_0],
    ["Q4_0", GGMLType.Q4_0],
  ] as const) {
    it(`${name} (ffn_down falls back to F16): same greedy text for 30 tokens as our engine`, async () => {
      const q = quantizeModel(openModelFile(storiesPath), { type, strategy: "rtn" });
      // The ffn_down rows are 172 wide, not a multiple of 32: those five matrices fall back.
      const fallbacks = q.report.filter((r) => r.fallback);
      expect(fallbacks.map((r) => r.name)).toEqual([0, 1, 2, 3, 4].map((l) => `blk.${l}.ffn_down.weight`));
      expect(fallbacks.every((r) => r.written === "f16")).toBe(true);
      const path = join(dir, `stories260K-${name}.gguf`);
      writeQuantizedModel(q, path);

      const model = await loadModel(path, { threads: 1, worker: false });
      try {
        const ours = await model.generate("Once upon a time", { maxTokens: 30, temperature: 0 }).text();
        const prompt = model.tokenize("Once upon a time");
        const trace = await llamaCppGreedy(path, prompt, 30, { topK: 2, threads: 1 });
        const theirs = trace.steps.map((s) => s.token);
        expect(ours.tokens).toEqual(theirs);
        expect(await llamaCppDetokenize(path, theirs, { lastTokens: prompt })).toBe(ours.text);
      } finally {
        await model.dispose();
      }
    });
  }
});
