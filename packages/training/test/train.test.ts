import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "@ryzanstein/engine";
import { disposeLlamaCpp, llamaCppGreedy } from "@ryzanstein/test-support";
import { bpeMetadata, createTokenizerFromGGUF, trainBpe } from "@ryzanstein/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import {
  AdamW,
  clipGradNorm,
  epochOrder,
  initParams,
  learningRate,
  loadCheckpoint,
  type ModelShape,
  makeWindows,
  nativeOps,
  ngramBaselines,
  TrainGraph,
  type TrainHyperParams,
  train,
} from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "rz-train-"));
afterAll(async () => {
  await disposeLlamaCpp();
  rmSync(dir, { recursive: true, force: true });
});

const text = Array.from(
  { length: 60 },
  (_, i) =>
    `Verse ${i % 7}: and the lamb ${["walked", "rested", "sang"][i % 3]} by the river of ${["stone", "light", "water", "gold"][i % 4]}.`,
).join("\n");
const bpe = trainBpe(text, { vocabSize: 300 });
const tokenizer = bpeMetadata(bpe);
const tokens = Int32Array.from(createTokenizerFromGGUF(tokenizer).encode(text));
const shape: ModelShape = {
  nLayers: 2,
  dim: 32,
  nHeads: 4,
  nKvHeads: 2,
  ffnDim: 64,
  vocabSize: bpe.tokens.length,
  contextLength: 64,
};
const hp: TrainHyperParams = {
  seqLen: 16,
  batchSize: 4,
  steps: 12,
  lr: 3e-3,
  warmup: 2,
  evalEvery: 4,
  seed: 7,
};

describe("optimizer and schedule", () => {
  it("AdamW: the first step moves each parameter by lr·sign(g) plus decoupled decay", () => {
    const p = Float32Array.of(1, -2, 3);
    const opt = new AdamW(3, Uint8Array.of(1, 1, 0), { weightDecay: 0.5 });
    opt.step(p, Float32Array.of(0.3, -4, 2), 0.1);
    expect(p[0]).toBeCloseTo(1 - 0.1 * (1 + 0.5 * 1), 5);
    expect(p[1]).toBeCloseTo(-2 - 0.1 * (-1 + 0.5 * -2), 5);
    expect(p[2]).toBeCloseTo(3 - 0.1, 5); // no decay where the mask is 0
    expect(opt.t).toBe(1);
  });

  it("clipping scales to the max norm and reports the norm before", () => {
    const g = Float32Array.of(3, 4);
    expect(clipGradNorm(g, 1)).toBeCloseTo(5);
    expect(Math.hypot(g[0], g[1])).toBeCloseTo(1, 5);
  });

  it("warmup then cosine to minLr", () => {
    expect(learningRate(0, 100, 1, 10, 0.1)).toBeCloseTo(0.1);
    expect(learningRate(9, 100, 1, 10, 0.1)).toBeCloseTo(1);
    expect(learningRate(55, 100, 1, 10, 0.1)).toBeCloseTo(0.55);
    expect(learningRate(100, 100, 1, 10, 0.1)).toBeCloseTo(0.1);
  });
});

describe("data", () => {
  it("windows, held-out split and a seeded shuffle", () => {
    const t = Int32Array.from({ length: 101 }, (_, i) => i);
    const { train: tr, eval: ev } = makeWindows(t, 10, 0.2);
    expect(tr.starts.length).toBe(8);
    expect(ev.starts.length).toBe(2);
    expect(ev.starts[0]).toBe(80);
    const a = epochOrder(8, 3, 0);
    expect(Array.from(a).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(epochOrder(8, 3, 0)).toEqual(a);
    expect(epochOrder(8, 3, 1)).not.toEqual(a);
  });

  it("gradient accumulation: two half batches give the gradient of the whole batch", () => {
    const ops = nativeOps({ threads: 2 });
    const params = initParams(shape, 2);
    const S = 16;
    const inputs = Int32Array.from(tokens.subarray(0, 4 * S));
    const targets = Int32Array.from(tokens.subarray(1, 4 * S + 1));
    const whole = new Float32Array(params.length);
    const lw = new TrainGraph(shape, 4, S, ops).step(params, inputs, targets, whole, 1 / (4 * S));
    const halves = new Float32Array(params.length);
    const half = new TrainGraph(shape, 2, S, ops);
    let lh = half.step(params, inputs.subarray(0, 2 * S), targets.subarray(0, 2 * S), halves, 1 / (4 * S));
    lh += half.step(params, inputs.subarray(2 * S), targets.subarray(2 * S), halves, 1 / (4 * S));
    ops.kernels.dispose();
    expect(Math.abs(lh - lw)).toBeLessThan(1e-3);
    let m = 0;
    let scale = 0;
    for (let i = 0; i < whole.length; i++) {
      m = Math.max(m, Math.abs(whole[i] - halves[i]));
      scale = Math.max(scale, Math.abs(whole[i]));
    }
    expect(m / scale).toBeLessThan(1e-5);
  });

  it("too little data is a clear error", () => {
    expect(() => makeWindows(Int32Array.of(1, 2, 3), 16, 0.1)).toThrow(/too short/);
  });
});

describe("train", () => {
  it("loss falls; exports a GGUF our engine and llama.cpp load with the trained logits", async () => {
    const out = join(dir, "tiny.gguf");
    const r = train({
      model: shape,
      training: { ...hp, steps: 40 },
      tokens,
      tokenizer,
      out,
      exportType: "f32",
      threads: 2,
    });
    expect(r.lossHistory[r.lossHistory.length - 1]).toBeLessThan(r.lossHistory[0] - 1);
    expect(Number.isFinite(r.evalLoss)).toBe(true);
    expect(readFileSync(join(dir, "tiny.loss.svg"), "utf8")).toContain("<svg");

    // The engine's forward pass on a training window gives the training graph's logits.
    const window = Array.from(tokens.subarray(0, 16));
    const m = await loadModel(out, { threads: 1, worker: false });
    const ours = await m.logits(window);
    await m.dispose();
    const ops = nativeOps({ threads: 1 });
    const g = new TrainGraph(shape, 1, 16, ops);
    const targets = Int32Array.from(tokens.subarray(1, 17));
    const loss = g.step(r.params, Int32Array.from(window), targets) / 16;
    ops.kernels.dispose();
    const V = shape.vocabSize;
    let engineLoss = 0;
    for (let i = 0; i < 16; i++) {
      const row = ours.subarray(i * V, (i + 1) * V);
      let mx = -Infinity;
      for (const v of row) mx = Math.max(mx, v);
      let s = 0;
      for (const v of row) s += Math.exp(v - mx);
      engineLoss += mx + Math.log(s) - row[targets[i]];
    }
    expect(Math.abs(engineLoss / 16 - loss)).toBeLessThan(1e-3);

    // llama.cpp picks the same greedy tokens as our engine.
    const trace = await llamaCppGreedy(out, window.slice(0, 4), 8, { topK: 2, threads: 1 });
    const m2 = await loadModel(out, { threads: 1, worker: false });
    const seq = [...window.slice(0, 4), ...trace.steps.map((s) => s.token)];
    const logits = await m2.logits(seq.slice(0, -1));
    await m2.dispose();
    for (let s = 0; s < 8; s++) {
      if (trace.steps[s].top2Gap < 0.01) continue;
      const row = logits.subarray((3 + s) * V, (4 + s) * V);
      let best = 0;
      for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
      expect(best).toBe(trace.steps[s].token);
    }
  });

  it("interrupt and resume reproduce the uninterrupted loss curve exactly", () => {
    const full = train({ model: shape, training: hp, tokens, tokenizer, threads: 2 });
    const ckpt = join(dir, "resume.ckpt");
    const first = train({
      model: shape,
      training: hp,
      tokens,
      tokenizer,
      threads: 2,
      checkpoint: ckpt,
      stopAfter: 5,
    });
    expect(first.steps).toBe(5);
    expect(loadCheckpoint(ckpt).state.step).toBe(5);
    const rest = train({ model: shape, training: hp, tokens, tokenizer, threads: 2, checkpoint: ckpt });
    expect(rest.steps).toBe(hp.steps);
    expect(rest.lossHistory).toEqual(full.lossHistory);
    expect(rest.evalHistory).toEqual(full.evalHistory);
    expect(rest.params).toEqual(full.params);
  });

  it("divergence stops with a clear message and keeps the last good checkpoint", () => {
    const ckpt = join(dir, "diverge.ckpt");
    train({ model: shape, training: hp, tokens, tokenizer, threads: 2, checkpoint: ckpt, stopAfter: 2 });
    const out = join(dir, "diverged.gguf");
    expect(() =>
      train({
        model: shape,
        training: { ...hp, lr: 1e30, warmup: 1 },
        tokens,
        tokenizer,
        threads: 2,
        checkpoint: ckpt,
        out,
      }),
    ).toThrow(/diverged at step \d+.*last good checkpoint/);
    expect(loadCheckpoint(ckpt).state.step).toBeGreaterThanOrEqual(2);
    expect(existsSync(out)).toBe(false);
  });

  it("n-gram baselines score the held-out targets", () => {
    const { eval: ev } = makeWindows(tokens, 16, 0.1);
    const bytes = bpe.tokens.map((t) => Array.from(t).length);
    const b = ngramBaselines(ev, shape.vocabSize, bytes);
    expect(b.tokens).toBe(ev.starts.length * 16);
    expect(b.bigramNats).toBeLessThan(b.unigramNats);
  });
});
