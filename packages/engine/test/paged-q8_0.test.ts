import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  GGMLType,
  kvQ8_0RowBytes,
  quantizeKvRowsQ8_0,
  ReferenceBackend,
  RyzansteinError,
} from "@ryzanstein/core-tensor";
import { NativeBackend } from "@ryzanstein/kernels-native";
import { type BatchedTrace, greedyBatched, writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import {
  BatchRunner,
  type KVCacheType,
  Model,
  openModelFile,
  PagedKvCache,
  readLlamaWeights,
  readModelConfig,
} from "../src/index.js";
import { logSoftmax, relL2, storiesPath } from "./helpers.js";

// A random-weight model with headDim 32 (a q8_0 cache needs whole Q8_0 blocks per head): 4 query
// heads over 2 KV heads, so GQA and two blocks per K/V row are covered.
const dir = mkdtempSync(join(tmpdir(), "rz-paged-q8-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const modelPath = join(dir, "h32.gguf");
writeRandomLlamaGGUF(modelPath, {
  nLayers: 2,
  dim: 128,
  nHeads: 4,
  nKvHeads: 2,
  ffnDim: 256,
  vocabSize: 600,
  type: GGMLType.Q8_0,
  seed: 5,
});

function load(backend: "native" | "reference", path = modelPath) {
  const gguf = openModelFile(path);
  const config = readModelConfig(gguf);
  return new Model(
    config,
    readLlamaWeights(gguf, config),
    backend === "native" ? new NativeBackend({ threads: 2 }) : new ReferenceBackend(),
  );
}

const PROMPTS = [
  [1, 403, 407, 261, 378, 260, 300, 301, 302],
  [1, 500, 501, 502, 503, 504],
  [1, 320, 262, 412, 289],
];
const BLOCK = 4;

/**
 * Greedy decoding of `prompts` for `steps` tokens through one BatchRunner with a `kvType` cache
 * (see `greedyBatched`): sequence s owns blocks s, s+n, s+2n, ... (interleaved, as a shared pool
 * hands them out).
 */
function greedy(model: Model, kvType: KVCacheType, prompts: number[][], steps: number): BatchedTrace {
  const maxCtx = 64;
  if (prompts.some((p) => p.length + steps > maxCtx))
    throw new Error("prompt + steps exceed the test context");
  const perSeq = maxCtx / BLOCK;
  const cache = new PagedKvCache(model, prompts.length * perSeq, BLOCK, kvType);
  const runner = new BatchRunner(model, cache, 64, prompts.length, maxCtx);
  const tables = prompts.map((_, s) => Array.from({ length: perSeq }, (_, j) => s + j * prompts.length));
  return greedyBatched((seqs) => runner.forward(seqs), model.config.vocabSize, prompts, tables, steps);
}

describe("q8_0 KV cache: types and sizes", () => {
  it("the single-sequence context and the paged cache allocate Q8_0 rows", () => {
    const model = load("reference");
    const c = model.config;
    const rowSize = c.nKvHeads * c.headDim;
    const ctx = model.createContext(16, 8, "q8_0");
    expect(ctx.kvType).toBe("q8_0");
    expect(ctx.keys[0]).toBeInstanceOf(Uint8Array);
    expect(ctx.values[c.nLayers - 1].length).toBe(16 * (rowSize + 2 * (rowSize / 32)));
    expect(() => model.createContext(16, 8, "q4_0" as KVCacheType)).toThrow(/f16, f32 or q8_0/);
    // Gemma 2's soft-capping is not in the paged kernel that reads Q8_0 rows: refused, not ignored
    const capped = new Model({ ...c, attnSoftcap: 50 }, model.weights, model.backend);
    expect(() => capped.createContext(16, 8, "q8_0")).toThrow(/soft-capping/);
    const cache = new PagedKvCache(model, 3, BLOCK, "q8_0");
    expect(cache.keys[0]).toBeInstanceOf(Uint8Array);
    expect(cache.rowUnits).toBe(rowSize + 2 * (rowSize / 32));
    expect(cache.keys[0].length).toBe(3 * BLOCK * cache.rowUnits);
    expect(PagedKvCache.bytesPerBlock(model, BLOCK, "q8_0")).toBe(2 * c.nLayers * BLOCK * cache.rowUnits);
    expect(PagedKvCache.bytesPerBlock(model, BLOCK, "q8_0")).toBeLessThan(
      0.55 * PagedKvCache.bytesPerBlock(model, BLOCK, "f16"),
    );
    // copy-on-write copies whole Q8_0 rows
    cache.keys[1][cache.rowUnits * BLOCK + 5] = 9;
    cache.copyBlock(1, 2);
    expect(cache.keys[1][cache.rowUnits * 2 * BLOCK + 5]).toBe(9);
    expect(() => new PagedKvCache(model, 3, BLOCK, "q4_0" as KVCacheType)).toThrow(/f16, f32 or q8_0/);
    // headDim 8 (stories260K): one Q8_0 block would span 4 heads; refused, as llama.cpp does
    const stories = load("reference", storiesPath);
    const sc = stories.config;
    expect(() => new PagedKvCache(stories, 3, BLOCK, "q8_0")).toThrow(/multiple of 32 .*headDim 8/);
    expect(() => stories.createContext(16, 8, "q8_0")).toThrow(/multiple of 32 .*headDim 8/);
    expect(() => PagedKvCache.bytesPerBlock(stories, BLOCK, "q8_0")).toThrow(RyzansteinError);
    expect(PagedKvCache.bytesPerBlock(stories, BLOCK, "f16")).toBe(
      2 * 2 * sc.nLayers * BLOCK * sc.nKvHeads * sc.headDim,
    );
  });
});

describe.each(["native", "reference"] as const)("BatchRunner with a q8_0 KV cache (%s)", (backend) => {
  it("batched greedy decoding equals each sequence run alone (tokens, log-probabilities)", () => {
    const model = load(backend);
    const steps = backend === "native" ? 24 : 6;
    const batched = greedy(model, "q8_0", PROMPTS, steps);
    for (let s = 0; s < PROMPTS.length; s++) {
      const alone = greedy(model, "q8_0", [PROMPTS[s]], steps);
      expect(batched.tokens[s]).toEqual(alone.tokens[0]);
      for (let i = 0; i < steps; i++)
        expect(Math.abs(batched.logps[s][i] - alone.logps[0][i])).toBeLessThan(1e-4);
    }
    model.backend.dispose?.();
  });
});

describe.each(["native", "reference"] as const)(
  "single-sequence engine with a q8_0 KV cache (%s)",
  (backend) => {
    it("gives the batched engine's logits (prefill in chunks, then decode)", () => {
      const model = load(backend);
      const vocab = model.config.vocabSize;
      const steps = backend === "native" ? 12 : 4;
      const batched = greedy(model, "q8_0", PROMPTS, steps);
      for (let s = 0; s < PROMPTS.length; s++) {
        // maxBatch 4: the prompt runs in chunks, as a long prompt does
        const ctx = model.createContext(64, 4, "q8_0");
        let logits = model.forward(ctx, PROMPTS[s]);
        for (let i = 0; i < steps; i++) {
          const lp = logSoftmax(logits);
          expect(Math.abs(lp[batched.tokens[s][i]] - batched.logps[s][i])).toBeLessThan(1e-4);
          let best = 0;
          for (let t = 1; t < vocab; t++) if (logits[t] > logits[best]) best = t;
          expect(best).toBe(batched.tokens[s][i]);
          logits = model.forward(ctx, [best]);
        }
      }
      model.backend.dispose?.();
    });

    it("stores llama.cpp's Q8_0 rows of the keys and values an F32 cache holds", () => {
      const model = load(backend);
      const c = model.config;
      const rowSize = c.nKvHeads * c.headDim;
      const f32 = model.createContext(32, 16, "f32");
      const q8 = model.createContext(32, 16, "q8_0");
      model.forward(f32, PROMPTS[0]);
      model.forward(q8, PROMPTS[0]);
      // Layer 0 sees the same inputs in both (later layers read attention over rounded K/V).
      const n = PROMPTS[0].length;
      for (const [q8rows, f32rows] of [
        [q8.keys[0], f32.keys[0]],
        [q8.values[0], f32.values[0]],
      ] as const) {
        const want = new Uint8Array(n * kvQ8_0RowBytes(rowSize));
        quantizeKvRowsQ8_0(want, 0, f32rows as Float32Array, n, rowSize);
        expect(Array.from(q8rows.subarray(0, want.length))).toEqual(Array.from(want));
      }
      model.backend.dispose?.();
    });

    it("applies a sliding window over Q8_0 rows as over F32 ones", () => {
      const base = load(backend);
      const model = new Model(
        { ...base.config, slidingWindow: 4, slidingWindowLayers: "all" },
        base.weights,
        base.backend,
      );
      const tokens = [1, 403, 407, 261, 378, 260, 300, 301, 302, 303, 304];
      const run = (m: Model, kvType: KVCacheType) =>
        Float32Array.from(m.forward(m.createContext(32, 16, kvType), tokens, "all"));
      const q8 = run(model, "q8_0");
      const f32 = run(model, "f32");
      const f32Full = run(base, "f32");
      // Q8_0 rounding moves this random model's logits by ~2.5 % (relL2 0.024 windowed, 0.025 without
      // a window); applying the window or not moves them by ~97 %.
      const err = relL2(q8, f32);
      expect(err).toBeLessThan(0.05);
      expect(err).toBeLessThan(relL2(f32Full, f32) / 10);
      base.backend.dispose?.();
    });
  },
);
