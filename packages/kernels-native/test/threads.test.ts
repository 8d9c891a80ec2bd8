import { GGMLType, Tensor } from "@ryzanstein/core-tensor";
import { describe, expect, it } from "vitest";
import { availableIsas, NativeBackend } from "../src/index.js";
import { ctx, FORMATS, firstMismatch, gen } from "./helpers.js";

// Each output element is computed by exactly one thread with the same code whatever the split,
// so 1, 2 and 3 threads must agree bit for bit.
describe.each(availableIsas())("isa=%s: thread counts 1, 2 and 3 agree exactly", (isa) => {
  it("matmul (every format, decode and prefill), attention, rmsNorm, softmax, swiglu, rope", () => {
    const backends = [1, 2, 3].map((threads) => new NativeBackend({ isa, threads }));
    try {
      const g = gen(`${isa}/threads`);
      const outputs = backends.map(() => [] as Float32Array[]);
      const rows = 301;
      const cols = 512;
      const ws = FORMATS.map((f) => Tensor.fromF32([rows, cols], g.uniform(rows * cols), f.type));
      const x = g.uniform(9 * cols);
      const k = g.uniform(200 * 2 * 64);
      const v = g.uniform(200 * 2 * 64);
      const q = g.uniform(9 * 6 * 64);
      const positions = Int32Array.from({ length: 9 }, (_, i) => 191 + i);
      const big = g.uniform(150000, 8);
      for (const [bi, nb] of backends.entries()) {
        const out = outputs[bi];
        for (const w of ws) {
          for (const n of [1, 9]) {
            const y = new Float32Array(n * rows);
            nb.matmul(y, w, x, n);
            out.push(y);
          }
        }
        const att = new Float32Array(q.length);
        nb.attention(att, q, k, v, positions, 9, { nHeads: 6, nKvHeads: 2, headDim: 64, scale: 0.125 });
        out.push(att);
        const normed = new Float32Array(big.length);
        nb.rmsNorm(normed, big, big.subarray(0, 5000), 30, 5000, 1e-6);
        out.push(normed);
        const sm = big.slice();
        nb.softmax(sm, 30, 5000);
        out.push(sm);
        const sw = new Float32Array(big.length);
        nb.swiglu(sw, big, big, big.length);
        out.push(sw);
        const r = big.slice(0, 40 * 8 * 64);
        nb.rope(
          r,
          40,
          Int32Array.from({ length: 40 }, (_, i) => i * 3),
          {
            nHeads: 8,
            headDim: 64,
            nDims: 64,
            freqBase: 10000,
            freqScale: 1,
            neox: true,
          },
        );
        out.push(r);
      }
      for (let b = 1; b < backends.length; b++) {
        for (let i = 0; i < outputs[0].length; i++) {
          expect(
            firstMismatch(outputs[b][i], outputs[0][i]),
            ctx(`${isa} threads=${b + 1} output #${i}`),
          ).toBe(-1);
        }
      }
    } finally {
      for (const nb of backends) nb.dispose();
    }
  });
});

it("defaults to one thread per core and the best ISA", () => {
  const nb = new NativeBackend();
  try {
    expect(nb.threads).toBeGreaterThanOrEqual(1);
    expect(nb.isa).toBe(availableIsas().at(-1));
    const w = Tensor.fromF32([2, 32], new Float32Array(64).fill(0.5), GGMLType.Q4_0);
    const y = new Float32Array(2);
    nb.matmul(y, w, new Float32Array(32).fill(1), 1);
    // activations 1.0 quantize to q = 127 with d = f16(1/127): 32 * 0.5 * 127 * d ≈ 15.999
    expect(y[0]).toBeCloseTo(16, 2);
    expect(y[1]).toBe(y[0]);
  } finally {
    nb.dispose();
  }
});
