// Where a batched decode step spends its time (never part of `npm test`): the 110M random Llama
// in Q4_0, `BatchRunner.forward` over 1, 2, 4, 8 and 16 sequences of one token each (decode at
// position ~64), every backend call timed; then the bare Q4_0 matmuls of the model's shapes for
// the same row counts. Per-op times are medians over the steps.
//
//   node bench/run.mjs bench/step-profile.ts        (RYZ_BENCH_THREADS=2 by default)
//   RYZ_BENCH_KV=q8_0 ...                           (the paged KV cache type; default f16)
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "@ryzanstein/core-tensor";
import {
  BatchRunner,
  type BatchSequence,
  type KVCacheType,
  Model,
  openModelFile,
  PagedKvCache,
  readLlamaWeights,
  readModelConfig,
} from "@ryzanstein/engine";
import { NativeBackend } from "@ryzanstein/kernels-native";

const THREADS = Number(process.env.RYZ_BENCH_THREADS ?? 2);
const STEPS = Number(process.env.RYZ_BENCH_STEPS ?? 12);
/** KV cache element type (`RYZ_BENCH_KV`: f16, f32 or q8_0). */
const KV = (process.env.RYZ_BENCH_KV ?? "f16") as KVCacheType;
const path = join(tmpdir(), "ryzanstein-bench", "random-110m-q4_0.gguf");
if (!existsSync(path)) {
  console.error(`${path} is missing: run \`npm run bench -w packages/server\` once to write it`);
  process.exit(1);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A backend proxy that adds each call's wall time (ms) to `times[op]`. */
function timed(b: Backend, times: Map<string, number>): Backend {
  return new Proxy(b, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const r = v.apply(target, args);
        times.set(String(prop), (times.get(String(prop)) ?? 0) + performance.now() - t0);
        return r;
      };
    },
  });
}

const gguf = openModelFile(path);
const config = readModelConfig(gguf);
const native = new NativeBackend({ threads: THREADS });
const times = new Map<string, number>();
const model = new Model(config, readLlamaWeights(gguf, config), timed(native, times));
const blockSize = 16;
const maxSeqs = 16;
const ctx = 256;
const cache = new PagedKvCache(model, maxSeqs * (ctx / blockSize), blockSize, KV);
const runner = new BatchRunner(model, cache, 256, maxSeqs, ctx);
const tables = Array.from({ length: maxSeqs }, (_, s) =>
  Array.from({ length: ctx / blockSize }, (_, j) => s * (ctx / blockSize) + j),
);
// Prefill 64 tokens per sequence (4 chunks of 256 rows) so decode attends a realistic history.
for (let s = 0; s < maxSeqs; s += 4) {
  runner.forward(
    Array.from({ length: 4 }, (_, i) => ({
      tokens: Array.from({ length: 64 }, (_, j) => 300 + (((s + i) * 31 + j * 7) % 20000)),
      start: 0,
      blockTable: tables[s + i],
      logits: true,
    })),
  );
}

console.log(`decode step, ${THREADS} threads, ${KV} KV cache, median of ${STEPS} steps (ms)`);
const rows: Record<string, string | number>[] = [];
for (const n of [1, 2, 4, 8, 16]) {
  const perOp = new Map<string, number[]>();
  const walls: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    const seqs: BatchSequence[] = Array.from({ length: n }, (_, s) => ({
      tokens: [400 + s + step],
      start: 64 + (step % 32),
      blockTable: tables[s],
      logits: true,
    }));
    times.clear();
    const t0 = performance.now();
    runner.forward(seqs);
    walls.push(performance.now() - t0);
    for (const [op, ms] of times) perOp.set(op, [...(perOp.get(op) ?? []), ms]);
  }
  const row: Record<string, string | number> = { n, "step ms": median(walls).toFixed(1) };
  let native = 0;
  for (const [op, ms] of perOp) {
    row[op] = median(ms).toFixed(2);
    native += median(ms);
  }
  row["js glue"] = (median(walls) - native).toFixed(2);
  row["ms/token"] = (median(walls) / n).toFixed(2);
  rows.push(row);
}
console.table(rows);

// Bare matmuls of the model's shapes.
const shapes: [string, (typeof model.weights.layers)[0]["wq"]][] = [
  ["wq 768x768", model.weights.layers[0].wq],
  ["wGate 2048x768", model.weights.layers[0].wGate],
  ["wDown 768x2048", model.weights.layers[0].wDown],
  ["output 32000x768", model.weights.output],
];
const mm: Record<string, string | number>[] = [];
for (const [name, w] of shapes) {
  const [rowsW, cols] = [w.shape[0], w.shape[1]];
  const row: Record<string, string | number> = { matrix: name };
  for (const n of [1, 2, 4, 8, 16]) {
    const x = new Float32Array(n * cols).map(() => Math.random() - 0.5);
    const y = new Float32Array(n * rowsW);
    const reps = name.startsWith("output") ? 10 : 60;
    const ts: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      native.matmul(y, w, x, n);
      ts.push(performance.now() - t0);
    }
    row[`n=${n} ms`] = median(ts).toFixed(3);
  }
  mm.push(row);
}
console.log("bare matmul (ms, median)");
console.table(mm);
native.dispose();
