// Attention over an F16 KV cache (tiled, online softmax, one task per token and range of KV heads) against
// ReferenceBackend decoding the same half bits, on every ISA variant; and toF16 bit-exactness.
import { f32ToF16, ReferenceBackend } from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import { availableIsas, type Isa, NativeBackend } from "../src/index.js";
import { ctx, gen, relErr } from "./helpers.js";

const ref = new ReferenceBackend();
const CASES = [
  { nHeads: 4, nKvHeads: 4, headDim: 16, ctxLen: 5 },
  { nHeads: 8, nKvHeads: 2, headDim: 64, ctxLen: 33 },
  { nHeads: 32, nKvHeads: 4, headDim: 64, ctxLen: 100 },
  { nHeads: 6, nKvHeads: 3, headDim: 12, ctxLen: 97 },
  { nHeads: 2, nKvHeads: 1, headDim: 7, ctxLen: 64 },
];

function toHalf(a: Float32Array): Uint16Array {
  return Uint16Array.from(a, f32ToF16);
}

describe.each(availableIsas())("isa=%s: F16 KV cache", (isa: Isa) => {
  const nb = new NativeBackend({ isa, threads: 2 });
  afterAll(() => nb.dispose());

  for (const c of CASES) {
    it(`attention heads=${c.nHeads}/${c.nKvHeads} headDim=${c.headDim} ctx=${c.ctxLen} (tiles of 32 keys), n=1,4,9`, () => {
      const g = gen(`${isa}/attn16/${c.nHeads}/${c.nKvHeads}/${c.headDim}/${c.ctxLen}`);
      const p = { ...c, scale: 1 / Math.sqrt(c.headDim) };
      const kvRow = c.nKvHeads * c.headDim;
      // Large-ish scores so the running max changes between tiles.
      const k = toHalf(g.uniform(c.ctxLen * kvRow, 4));
      const v = toHalf(g.uniform(c.ctxLen * kvRow, 2));
      for (const n of [1, 4, 9]) {
        const consecutive = g.rand() < 0.5 && n <= c.ctxLen;
        const positions = Int32Array.from({ length: n }, (_, i) =>
          consecutive ? c.ctxLen - n + i : g.int(c.ctxLen),
        );
        const q = g.uniform(n * c.nHeads * c.headDim, 3);
        const want = new Float32Array(q.length);
        const got = new Float32Array(q.length).fill(Number.NaN);
        ref.attention(want, q, k, v, positions, n, p);
        nb.attention(got, q, k, v, positions, n, p);
        expect(
          relErr(got, want),
          ctx(`${isa} attention f16 n=${n} positions=${Array.from(positions)}`),
        ).toBeLessThanOrEqual(2e-5);
      }
    });
  }

  it("a token's result does not depend on how its KV heads are split across tasks", () => {
    // One decode row splits its KV heads into ranges to use every thread; among many rows each task
    // takes whole rows. Each head's arithmetic is the same, so the bits must be too.
    const g = gen(`${isa}/attn16/split`);
    const p = { nHeads: 12, nKvHeads: 6, headDim: 64, scale: 0.125 };
    const ctxLen = 70;
    const k = toHalf(g.uniform(ctxLen * 6 * 64, 4));
    const v = toHalf(g.uniform(ctxLen * 6 * 64, 2));
    const n = 16;
    const row = 12 * 64;
    const q = g.uniform(n * row, 3);
    const positions = Int32Array.from({ length: n }, () => g.int(ctxLen));
    const many = new Float32Array(n * row);
    nb.attention(many, q, k, v, positions, n, p);
    for (const threads of [1, 2, 5]) {
      const other = new NativeBackend({ isa, threads });
      try {
        for (let t = 0; t < n; t += 5) {
          const one = new Float32Array(row);
          other.attention(one, q.subarray(t * row, (t + 1) * row), k, v, positions.subarray(t, t + 1), 1, p);
          expect(Array.from(one), ctx(`${isa} threads=${threads} row ${t}`)).toEqual(
            Array.from(many.subarray(t * row, (t + 1) * row)),
          );
        }
      } finally {
        other.dispose();
      }
    }
  });

  for (const c of CASES) {
    it(`llama.cpp numerics (F16 accumulation) heads=${c.nHeads}/${c.nKvHeads} headDim=${c.headDim} ctx=${c.ctxLen} equal the reference emulation`, () => {
      const g = gen(`${isa}/attn16acc/${c.nHeads}/${c.nKvHeads}/${c.headDim}/${c.ctxLen}`);
      const p = { ...c, scale: 1 / Math.sqrt(c.headDim), f16Accumulate: true };
      const kvRow = c.nKvHeads * c.headDim;
      const k = toHalf(g.uniform(c.ctxLen * kvRow, 4));
      const v = toHalf(g.uniform(c.ctxLen * kvRow, 2));
      for (const n of [1, 5]) {
        const positions = Int32Array.from({ length: n }, () => g.int(c.ctxLen));
        const q = g.uniform(n * c.nHeads * c.headDim, 3);
        const want = new Float32Array(q.length);
        const got = new Float32Array(q.length).fill(Number.NaN);
        const exact = new Float32Array(q.length);
        ref.attention(want, q, k, v, positions, n, p);
        nb.attention(got, q, k, v, positions, n, p);
        ref.attention(exact, q, k, v, positions, n, { ...p, f16Accumulate: false });
        // Same operations in the same order: only a rare last-bit difference of exp() between
        // glibc and V8 (or of the emulated fma) may remain, which can flip one F16 rounding.
        expect(relErr(got, want), ctx(`${isa} f16-accumulate n=${n}`)).toBeLessThanOrEqual(1e-6);
        // F16 accumulation approximates the exact result (F16 precision, not something else).
        expect(relErr(got, exact)).toBeLessThan(5e-3);
      }
    });
  }

  it("toF16 rounds exactly as f32ToF16 (ties, subnormals, overflow, NaN)", () => {
    const g = gen(`${isa}/toF16`);
    const src = Float32Array.from([
      ...g.uniform(1000, 70000),
      ...g.uniform(100, 1e-5),
      0.5 + 2 ** -12,
      1 + 2 ** -11,
      65520,
      -65504,
      6e-8,
      Number.POSITIVE_INFINITY,
      Number.NaN,
      -0,
    ]);
    const dst = new Uint16Array(src.length + 3);
    nb.toF16(dst, 3, src, src.length);
    for (let i = 0; i < src.length; i++) {
      const want = f32ToF16(src[i]);
      if (Number.isNaN(src[i])) expect(dst[i + 3] & 0x7c00).toBe(0x7c00);
      else expect(dst[i + 3], `${src[i]}`).toBe(want);
    }
  });

  it("rejects mixed F16 / F32 caches", () => {
    const p = { nHeads: 2, nKvHeads: 1, headDim: 4, scale: 0.5 };
    const out = new Float32Array(8);
    expect(() =>
      nb.attention(out, new Float32Array(8), new Uint16Array(8), new Float32Array(8), Int32Array.of(0), 1, p),
    ).toThrow(/both/);
  });
});
