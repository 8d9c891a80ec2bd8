import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGMLType } from "@ryzanstein/core-tensor";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "rz-loop-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the event loop stays responsive", () => {
  it("a 10 ms timer keeps firing during ≥ 1 s of generation on a ~110M model", async () => {
    const path = join(dir, "m110.gguf");
    writeRandomLlamaGGUF(path, {
      nLayers: 12,
      dim: 768,
      nHeads: 12,
      nKvHeads: 12,
      ffnDim: 2048,
      vocabSize: 32000,
      type: GGMLType.Q4_0,
    });
    const model = await loadModel(path, { threads: 2, contextSize: 1024 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const controller = new AbortController();
    const started = performance.now();
    const stopper = setTimeout(() => controller.abort(), 1500);
    const gen = model.generate(
      Array.from({ length: 64 }, (_, i) => 1 + i),
      {
        maxTokens: 900,
        temperature: 0,
        ignoreEos: true,
        signal: controller.signal,
      },
    );
    let tokens = 0;
    for await (const _ of gen) tokens++;
    const elapsed = performance.now() - started;
    clearInterval(timer);
    clearTimeout(stopper);
    await model.dispose();
    console.log(`generation: ${tokens} tokens in ${elapsed.toFixed(0)} ms, timer fired ${ticks} times`);
    expect(elapsed).toBeGreaterThanOrEqual(1000);
    expect(ticks).toBeGreaterThanOrEqual(50);
  });
});
