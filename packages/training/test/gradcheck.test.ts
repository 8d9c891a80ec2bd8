// Gradient checks: every backward kernel and a whole small model against central finite
// differences of the float64 reference, and every native ISA variant against the reference.
import { dequantizeRow, GGMLType, Tensor } from "@ryzanstein/core-tensor";
import { availableIsas } from "@ryzanstein/kernels-native";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AttentionShape,
  crossEntropy,
  embedding,
  embeddingBackward,
  initParams,
  nativeOps,
  paramLayout,
  referenceOps,
  rmsNorm,
  rmsNormBackward,
  rope,
  seededRandom,
  swiglu,
  swigluBackward,
  TrainGraph,
} from "../src/index.js";

const rand = seededRandom(42);
const randn = (n: number, scale = 1) => Float64Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
const isas = availableIsas().filter((i) => i !== "avx512" || availableIsas().includes("avx512"));
const natives = isas.map((isa) => ({ isa, ops: nativeOps({ isa, threads: 2 }) }));
afterAll(() => {
  for (const n of natives) n.ops.kernels.dispose();
});

/** Max |analytic − numeric| of d(Σ r·f(x))/dx over every element of x, and the largest numeric value. */
function fdCheck(
  x: Float64Array,
  f: () => Float64Array,
  r: Float64Array,
  analytic: Float64Array,
  eps = 1e-6,
) {
  let err = 0;
  let scale = 0;
  const obj = () => f().reduce((s, v, i) => s + v * r[i], 0);
  for (let i = 0; i < x.length; i++) {
    const o = x[i];
    x[i] = o + eps;
    const p = obj();
    x[i] = o - eps;
    const m = obj();
    x[i] = o;
    const num = (p - m) / (2 * eps);
    err = Math.max(err, Math.abs(num - analytic[i]));
    scale = Math.max(scale, Math.abs(num));
  }
  return { err, scale };
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const f32 = (a: Float64Array) => Float32Array.from(a);

describe("finite differences (float64 reference)", () => {
  const n = 3;
  const inDim = 5;
  const outDim = 4;

  it("linear: both gradients", () => {
    const x = randn(n * inDim);
    const w = randn(outDim * inDim);
    const r = randn(n * outDim);
    const f = () => {
      const y = new Float64Array(n * outDim);
      referenceOps.linear(y, x, w, n, inDim, outDim);
      return y;
    };
    const dx = new Float64Array(n * inDim);
    referenceOps.linearBackwardInput(dx, r, w, n, inDim, outDim, false);
    const dw = new Float64Array(outDim * inDim);
    referenceOps.linearBackwardWeight(dw, r, x, n, inDim, outDim);
    const a = fdCheck(x, f, r, dx);
    const b = fdCheck(w, f, r, dw);
    expect(a.err).toBeLessThan(1e-8 * Math.max(1, a.scale));
    expect(b.err).toBeLessThan(1e-8 * Math.max(1, b.scale));
  });

  it("RMSNorm: input and weight", () => {
    const dim = 6;
    const x = randn(n * dim);
    const w = randn(dim);
    const r = randn(n * dim);
    const f = () => {
      const y = new Float64Array(n * dim);
      rmsNorm(y, x, w, n, dim, 1e-5);
      return y;
    };
    const dx = new Float64Array(n * dim);
    const dw = new Float64Array(dim);
    rmsNormBackward(dx, dw, r, x, w, n, dim, 1e-5);
    expect(fdCheck(x, f, r, dx).err).toBeLessThan(1e-8);
    expect(fdCheck(w, f, r, dw).err).toBeLessThan(1e-8);
  });

  it("RoPE (Llama adjacent pairs): the backward is the inverse rotation", () => {
    const seq = 4;
    const heads = 2;
    const hd = 4;
    const x = randn(2 * seq * heads * hd);
    const r = randn(x.length);
    const f = () => {
      const y = Float64Array.from(x);
      rope(y, 2 * seq, seq, heads, hd, 10000);
      return y;
    };
    const dx = Float64Array.from(r);
    rope(dx, 2 * seq, seq, heads, hd, 10000, -1);
    expect(fdCheck(x, f, r, dx).err).toBeLessThan(1e-8);
  });

  it("SwiGLU: gate and up", () => {
    const len = 12;
    const gate = randn(len, 3);
    const up = randn(len, 3);
    const r = randn(len);
    const f = () => {
      const y = new Float64Array(len);
      swiglu(y, gate, up, len);
      return y;
    };
    const dg = new Float64Array(len);
    const du = new Float64Array(len);
    swigluBackward(dg, du, r, gate, up, len);
    expect(fdCheck(gate, f, r, dg).err).toBeLessThan(1e-8);
    expect(fdCheck(up, f, r, du).err).toBeLessThan(1e-8);
  });

  it("cross-entropy over the vocabulary (ignored targets give no gradient)", () => {
    const vocab = 7;
    const logits = randn(n * vocab, 3);
    const targets = [2, -1, 6];
    const d = new Float64Array(n * vocab);
    crossEntropy(logits, targets, n, vocab, d, 0.5);
    const f = () => Float64Array.of(0.5 * crossEntropy(logits, targets, n, vocab));
    expect(fdCheck(logits, f, Float64Array.of(1), d).err).toBeLessThan(1e-8);
    expect(maxDiff(d.subarray(vocab, 2 * vocab), new Float64Array(vocab))).toBe(0);
  });

  it("embedding: scatter-add of repeated ids", () => {
    const dim = 3;
    const table = randn(5 * dim);
    const ids = [1, 4, 1];
    const r = randn(ids.length * dim);
    const f = () => {
      const y = new Float64Array(ids.length * dim);
      embedding(y, table, ids, ids.length, dim);
      return y;
    };
    const dt = new Float64Array(table.length);
    embeddingBackward(dt, r, ids, ids.length, dim);
    expect(fdCheck(table, f, r, dt).err).toBeLessThan(1e-8);
  });

  it("causal GQA attention: q, k and v", () => {
    const s: AttentionShape = { batch: 2, seq: 4, nHeads: 4, nKvHeads: 2, headDim: 3, scale: 0.7 };
    const t = s.batch * s.seq;
    const q = randn(t * s.nHeads * s.headDim);
    const k = randn(t * s.nKvHeads * s.headDim);
    const v = randn(t * s.nKvHeads * s.headDim);
    const probs = new Float64Array(s.batch * s.nHeads * s.seq * s.seq);
    const r = randn(q.length);
    const f = () => {
      const out = new Float64Array(q.length);
      referenceOps.attention(out, probs, q, k, v, s);
      return out;
    };
    f();
    const dq = new Float64Array(q.length);
    const dk = new Float64Array(k.length);
    const dv = new Float64Array(v.length);
    referenceOps.attentionBackward(dq, dk, dv, q, k, v, probs, r, s);
    expect(fdCheck(q, f, r, dq).err).toBeLessThan(1e-8);
    expect(fdCheck(k, f, r, dk).err).toBeLessThan(1e-8);
    expect(fdCheck(v, f, r, dv).err).toBeLessThan(1e-8);
  });

  it("a whole model (2 layers, GQA): every 5th parameter", () => {
    const shape = {
      nLayers: 2,
      dim: 16,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 32,
      vocabSize: 20,
      contextLength: 16,
    };
    const p = Float64Array.from(initParams(shape, 3), (x) => x * 10);
    for (const s of paramLayout(shape).specs) {
      if (s.isNorm) for (let i = 0; i < s.size; i++) p[s.offset + i] = 1 + 0.1 * Math.sin(i);
    }
    const g = new TrainGraph(shape, 2, 5, referenceOps);
    const tokens = Int32Array.from({ length: 10 }, (_, i) => (i * 7 + 3) % 20);
    const targets = Int32Array.from({ length: 10 }, (_, i) => (i * 5 + 1) % 20);
    const grads = new Float64Array(p.length);
    g.step(p, tokens, targets, grads);
    let err = 0;
    let scale = 0;
    for (let i = 0; i < p.length; i += 5) {
      const o = p[i];
      p[i] = o + 1e-5;
      const lp = g.step(p, tokens, targets);
      p[i] = o - 1e-5;
      const lm = g.step(p, tokens, targets);
      p[i] = o;
      err = Math.max(err, Math.abs((lp - lm) / 2e-5 - grads[i]));
      scale = Math.max(scale, Math.abs(grads[i]));
    }
    expect(err / scale).toBeLessThan(1e-7);
  });
});

describe.each(natives)("native kernels ($isa) against the reference", ({ ops }) => {
  it("GEMM in all three layouts (odd sizes, accumulate)", () => {
    const n = 37;
    const inDim = 70;
    const outDim = 21;
    const x = randn(n * inDim);
    const w = randn(outDim * inDim);
    const dy = randn(n * outDim);
    const y64 = new Float64Array(n * outDim);
    referenceOps.linear(y64, x, w, n, inDim, outDim);
    const y = new Float32Array(n * outDim);
    ops.linear(y, f32(x), f32(w), n, inDim, outDim);
    expect(maxDiff(y, y64)).toBeLessThan(1e-4);
    const dx64 = Float64Array.from(x);
    referenceOps.linearBackwardInput(dx64, dy, w, n, inDim, outDim, true);
    const dx = f32(x);
    ops.linearBackwardInput(dx, f32(dy), f32(w), n, inDim, outDim, true);
    expect(maxDiff(dx, dx64)).toBeLessThan(1e-4);
    const dw64 = Float64Array.from(w);
    referenceOps.linearBackwardWeight(dw64, dy, x, n, inDim, outDim);
    const dw = f32(w);
    ops.linearBackwardWeight(dw, f32(dy), f32(x), n, inDim, outDim);
    expect(maxDiff(dw, dw64)).toBeLessThan(1e-4);
  });

  it.each([
    ["Q8_0", GGMLType.Q8_0],
    ["Q4_0", GGMLType.Q4_0],
  ] as const)("input gradient through a frozen %s weight", (_name, type) => {
    const n = 5;
    const inDim = 64;
    const outDim = 8;
    const frozen = Tensor.fromF32([outDim, inDim], Float32Array.from(randn(outDim * inDim)), type);
    const w = dequantizeRow(type, frozen.data, outDim * inDim); // the frozen weight, as the forward sees it
    const dy = randn(n * outDim);
    const dx64 = new Float64Array(n * inDim);
    referenceOps.linearBackwardInput(dx64, dy, Float64Array.from(w), n, inDim, outDim, false);
    const dx = new Float32Array(n * inDim);
    ops.linearBackwardInput(dx, f32(dy), w, n, inDim, outDim, false);
    expect(maxDiff(dx, dx64)).toBeLessThan(1e-4);
  });

  it("causal GQA attention forward and backward", () => {
    const s: AttentionShape = { batch: 3, seq: 9, nHeads: 6, nKvHeads: 2, headDim: 8, scale: 0.35 };
    const t = s.batch * s.seq;
    const q = randn(t * s.nHeads * s.headDim);
    const k = randn(t * s.nKvHeads * s.headDim);
    const v = randn(t * s.nKvHeads * s.headDim);
    const dout = randn(q.length);
    const pn = s.batch * s.nHeads * s.seq * s.seq;
    const out64 = new Float64Array(q.length);
    const p64 = new Float64Array(pn);
    referenceOps.attention(out64, p64, q, k, v, s);
    const grads64 = [new Float64Array(q.length), new Float64Array(k.length), new Float64Array(v.length)];
    referenceOps.attentionBackward(grads64[0], grads64[1], grads64[2], q, k, v, p64, dout, s);
    const out = new Float32Array(q.length);
    const p = new Float32Array(pn);
    ops.attention(out, p, f32(q), f32(k), f32(v), s);
    expect(maxDiff(out, out64)).toBeLessThan(1e-5);
    expect(maxDiff(p, p64)).toBeLessThan(1e-5);
    const grads = [new Float32Array(q.length), new Float32Array(k.length), new Float32Array(v.length)];
    ops.attentionBackward(grads[0], grads[1], grads[2], f32(q), f32(k), f32(v), p, f32(dout), s);
    for (let i = 0; i < 3; i++) expect(maxDiff(grads[i], grads64[i])).toBeLessThan(1e-5);
  });

  it("RMSNorm, RoPE, SwiGLU, cross-entropy and embedding, forward and backward", () => {
    const n = 13;
    const dim = 24;
    const x = randn(n * dim, 2);
    const w = randn(dim);
    const dy = randn(n * dim);
    const y64 = new Float64Array(n * dim);
    referenceOps.rmsNorm(y64, x, w, n, dim, 1e-5);
    const y = new Float32Array(n * dim);
    ops.rmsNorm(y, f32(x), f32(w), n, dim, 1e-5);
    expect(maxDiff(y, y64)).toBeLessThan(1e-5);
    const dx64 = new Float64Array(n * dim);
    const dw64 = new Float64Array(dim);
    referenceOps.rmsNormBackward(dx64, dw64, dy, x, w, n, dim, 1e-5);
    const dx = new Float32Array(n * dim);
    const dw = new Float32Array(dim);
    ops.rmsNormBackward(dx, dw, f32(dy), f32(x), f32(w), n, dim, 1e-5);
    expect(maxDiff(dx, dx64)).toBeLessThan(1e-5);
    expect(maxDiff(dw, dw64)).toBeLessThan(1e-4);

    for (const sign of [1, -1]) {
      const r64 = Float64Array.from(x);
      referenceOps.rope(r64, n, 5, 3, 8, 10000, sign);
      const r = f32(x);
      ops.rope(r, n, 5, 3, 8, 10000, sign);
      expect(maxDiff(r, r64)).toBeLessThan(1e-5);
    }

    const len = n * dim;
    const up = randn(len, 2);
    const s64 = new Float64Array(len);
    referenceOps.swiglu(s64, x, up, len);
    const sw = new Float32Array(len);
    ops.swiglu(sw, f32(x), f32(up), len);
    expect(maxDiff(sw, s64)).toBeLessThan(1e-5);
    const g64 = [new Float64Array(len), new Float64Array(len)];
    referenceOps.swigluBackward(g64[0], g64[1], dy, x, up, len);
    const g32 = [new Float32Array(len), new Float32Array(len)];
    ops.swigluBackward(g32[0], g32[1], f32(dy), f32(x), f32(up), len);
    expect(maxDiff(g32[0], g64[0])).toBeLessThan(1e-5);
    expect(maxDiff(g32[1], g64[1])).toBeLessThan(1e-5);

    const vocab = 24;
    const targets = Int32Array.from({ length: n }, (_, i) => (i % 4 === 3 ? -1 : (i * 5) % vocab));
    const d64 = new Float64Array(n * vocab);
    const l64 = referenceOps.crossEntropy(x, targets, n, vocab, d64, 0.25);
    const d32 = new Float32Array(n * vocab);
    const l32 = ops.crossEntropy(f32(x), targets, n, vocab, d32, 0.25);
    expect(Math.abs(l32 - l64)).toBeLessThan(1e-4);
    expect(maxDiff(d32, d64)).toBeLessThan(1e-6);
    expect(Math.abs(ops.crossEntropy(f32(x), targets, n, vocab, null, 1) - l64)).toBeLessThan(1e-4);

    const ids = Int32Array.from({ length: n }, (_, i) => (i * 3) % 7);
    const t64 = new Float64Array(7 * dim);
    referenceOps.embeddingBackward(t64, dy, ids, n, dim);
    const t32 = new Float32Array(7 * dim);
    ops.embeddingBackward(t32, f32(dy), ids, n, dim);
    expect(maxDiff(t32, t64)).toBeLessThan(1e-5);
  });

  it("a whole model: native gradients equal the float64 reference's", () => {
    const shape = {
      nLayers: 2,
      dim: 32,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 64,
      vocabSize: 50,
      contextLength: 16,
    };
    const p32 = initParams(shape, 5).map((x) => x * 10);
    for (const s of paramLayout(shape).specs) if (s.isNorm) p32.fill(1.1, s.offset, s.offset + s.size);
    const tokens = Int32Array.from({ length: 16 }, (_, i) => (i * 7 + 3) % 50);
    const targets = Int32Array.from({ length: 16 }, (_, i) => (i * 5 + 1) % 50);
    const ref = new TrainGraph(shape, 2, 8, referenceOps);
    const g64 = new Float64Array(p32.length);
    const l64 = ref.step(Float64Array.from(p32), tokens, targets, g64);
    const nat = new TrainGraph(shape, 2, 8, ops);
    const g32 = new Float32Array(p32.length);
    const l32 = nat.step(p32, tokens, targets, g32);
    expect(Math.abs(l32 - l64)).toBeLessThan(1e-4);
    let scale = 0;
    for (const v of g64) scale = Math.max(scale, Math.abs(v));
    expect(maxDiff(g32, g64) / scale).toBeLessThan(1e-4);
  });
});
