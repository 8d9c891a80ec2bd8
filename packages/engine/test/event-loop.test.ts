import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGMLType } from "@ryzanstein/core-tensor";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "rz-loop-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const path = join(dir, "m110.gguf");

describe("the event loop stays responsive", () => {
  beforeAll(() => {
    writeRandomLlamaGGUF(path, {
      nLayers: 12,
      dim: 768,
      nHeads: 12,
      nKvHeads: 12,
      ffnDim: 2048,
      vocabSize: 32000,
      type: GGMLType.Q4_0,
    });
  });

  it("a 10 ms timer keeps firing during ≥ 1 s of generation on a ~110M model", async () => {
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

  it("a 10 ms timer keeps firing during a 512-token prefill (repacked Q4_0 weights, F16 KV cache)", async () => {
    const model = await loadModel(path, { threads: 2, contextSize: 1024 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    const gen = model.generate(
      Array.from({ length: 512 }, (_, i) => 3 + ((i * 37) % 30000)),
      { maxTokens: 1, temperature: 0, ignoreEos: true },
    );
    let tokens = 0;
    for await (const _ of gen) tokens++;
    const elapsed = performance.now() - started;
    clearInterval(timer);
    await model.dispose();
    console.log(`512-token prefill + 1 token in ${elapsed.toFixed(0)} ms, timer fired ${ticks} times`);
    expect(tokens).toBe(1);
    // At least half the ticks a free loop would give (the timer is starved only if the loop blocks).
    expect(ticks).toBeGreaterThanOrEqual(Math.floor((elapsed / 10) * 0.5) - 2);
  });
});
