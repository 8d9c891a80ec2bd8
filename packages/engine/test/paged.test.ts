import { ReferenceBackend } from "@ryzanstein/core-tensor";
import { NativeBackend } from "@ryzanstein/kernels-native";
import { describe, expect, it } from "vitest";
import {
  BatchRunner,
  Model,
  openModelFile,
  PagedKvCache,
  readLlamaWeights,
  readModelConfig,
} from "../src/index.js";
import { logSoftmax, relL2, storiesPath } from "./helpers.js";

function load(backend: "native" | "reference") {
  const gguf = openModelFile(storiesPath);
  const config = readModelConfig(gguf);
  return new Model(
    config,
    readLlamaWeights(gguf, config),
    backend === "native" ? new NativeBackend({ threads: 2 }) : new ReferenceBackend(),
  );
}

function maxAbsDiff(a: Float64Array, b: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe.each([
  ["native", "f16"],
  ["native", "f32"],
  ["reference", "f16"],
  ["reference", "f32"],
] as const)("BatchRunner (%s, %s KV cache) on stories260K", (backend, kvType) => {
  it("batched prefill chunks and decode rows give the logits of sequences run alone", () => {
    const model = load(backend);
    const cache = new PagedKvCache(model, 32, 4, kvType);
    expect(cache.keys[0]).toBeInstanceOf(kvType === "f16" ? Uint16Array : Float32Array);
    const runner = new BatchRunner(model, cache, 64, 4, 64);
    const a = [1, 403, 407, 261, 378, 260, 300, 301, 302];
    const b = [1, 500, 501, 502, 503, 504];
    // shuffled block tables
    const tableA = [9, 2, 30];
    const tableB = [5, 17];
    // step 1: a's first 5 tokens (no logits), all of b (logits)
    runner.forward([
      { tokens: a.slice(0, 5), start: 0, blockTable: tableA, logits: false },
      { tokens: b, start: 0, blockTable: tableB, logits: true },
    ]);
    // step 2: the rest of a (logits) and one more token of b
    const out = runner.forward([
      { tokens: [42], start: 6, blockTable: tableB, logits: true },
      { tokens: a.slice(5), start: 5, blockTable: tableA, logits: true },
    ]);
    const vocab = model.config.vocabSize;
    const alone = (tokens: number[]) =>
      Float32Array.from(model.forward(model.createContext(64, 512, kvType), tokens));
    const wantB = alone([...b, 42]);
    const wantA = alone(a);
    const gotB = out.logits.subarray(0, vocab);
    const gotA = out.logits.subarray(vocab, 2 * vocab);
    expect(relL2(gotB, wantB)).toBeLessThan(1e-5);
    expect(relL2(gotA, wantA)).toBeLessThan(1e-5);
    // log-probabilities of the batched step against the single-sequence engine, same cache type
    expect(maxAbsDiff(logSoftmax(gotB), logSoftmax(wantB))).toBeLessThan(1e-4);
    expect(maxAbsDiff(logSoftmax(gotA), logSoftmax(wantA))).toBeLessThan(1e-4);
    model.backend.dispose?.();
  });

  it("copies blocks and rejects tables too short for the positions", () => {
    const model = load(backend);
    const cache = new PagedKvCache(model, 4, 4, kvType);
    cache.keys[0][cache.rowSize * 4] = 3;
    cache.copyBlock(1, 2);
    expect(cache.keys[0][cache.rowSize * 8]).toBe(3);
    const runner = new BatchRunner(model, cache, 8, 2, 16);
    expect(() =>
      runner.forward([{ tokens: [1, 2, 3, 4, 5], start: 0, blockTable: [0], logits: true }]),
    ).toThrow(/block table/);
    model.backend.dispose?.();
  });
});
