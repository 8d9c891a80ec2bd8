import { f32ToF16, ReferenceBackend } from "@ryzanstein/core-tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { availableIsas, type Isa, NativeBackend } from "../src/index.js";
import { ctx, gen, pagedCase, relErr } from "./helpers.js";

const ref = new ReferenceBackend();
const toHalf = (a: Float32Array) => Uint16Array.from(a, f32ToF16);

/** Float K/V rows for `pagedCase`. */
const floatCase = (label: string, nHeads: number, nKvHeads: number, headDim: number, blockSize: number) =>
  pagedCase(label, { nHeads, nKvHeads, headDim, blockSize }, (g, rows, rowSize, scale) =>
    g.uniform(rows * rowSize, scale),
  );

describe.each(availableIsas())("pagedAttention isa=%s", (isa: Isa) => {
  let nb: NativeBackend;
  beforeAll(() => {
    nb = new NativeBackend({ isa, threads: 2 });
  });
  afterAll(() => nb.dispose());

  for (const [nh, nkv, hd, bs] of [
    [4, 4, 16, 16],
    [8, 2, 64, 16],
    [6, 3, 48, 7],
  ]) {
    it(`matches the reference: heads=${nh}/${nkv} headDim=${hd} blockSize=${bs}`, () => {
      const c = floatCase(`${isa}/paged/${nh}/${nkv}/${hd}/${bs}`, nh, nkv, hd, bs);
      const want = new Float32Array(c.q.length);
      const got = new Float32Array(c.q.length);
      ref.pagedAttention(want, c.q, c.k, c.v, c.positions, c.seqOfRow, c.tables, c.n, c.params);
      nb.pagedAttention(got, c.q, c.k, c.v, c.positions, c.seqOfRow, c.tables, c.n, c.params);
      expect(relErr(got, want), ctx(`${isa} paged attention`)).toBeLessThanOrEqual(2e-5);
    });
  }

  for (const [nh, nkv, hd, bs] of [
    [4, 4, 16, 16],
    [8, 2, 64, 16],
    [6, 3, 48, 7],
    [2, 1, 7, 5],
  ]) {
    it(`F16 cache matches the reference: heads=${nh}/${nkv} headDim=${hd} blockSize=${bs}`, () => {
      const c = floatCase(`${isa}/paged16/${nh}/${nkv}/${hd}/${bs}`, nh, nkv, hd, bs);
      const k = toHalf(c.k);
      const v = toHalf(c.v);
      const want = new Float32Array(c.q.length);
      const got = new Float32Array(c.q.length).fill(Number.NaN);
      ref.pagedAttention(want, c.q, k, v, c.positions, c.seqOfRow, c.tables, c.n, c.params);
      nb.pagedAttention(got, c.q, k, v, c.positions, c.seqOfRow, c.tables, c.n, c.params);
      expect(relErr(got, want), ctx(`${isa} F16 paged attention`)).toBeLessThanOrEqual(2e-5);
    });
  }

  it("F16: equals contiguous F16 attention bit for bit (blocks in order, a chunk split into runs)", () => {
    const g = gen(`${isa}/paged16/contiguous`);
    const p = { nHeads: 4, nKvHeads: 2, headDim: 32, scale: 0.2 };
    const n = 40;
    const k = toHalf(g.uniform(80 * 64, 2));
    const v = toHalf(g.uniform(80 * 64, 2));
    const q = g.uniform(n * 128, 2);
    const positions = Int32Array.from({ length: n }, (_, i) => 30 + i);
    const a = new Float32Array(q.length);
    const b = new Float32Array(q.length);
    nb.attention(a, q, k, v, positions, n, p);
    const tables = Int32Array.from({ length: 10 }, (_, i) => i);
    nb.pagedAttention(b, q, k, v, positions, new Int32Array(n), tables, n, {
      ...p,
      blockSize: 8,
      maxBlocksPerSeq: 10,
    });
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it("rejects a cache mixing F32 and F16", () => {
    const params = { nHeads: 1, nKvHeads: 1, headDim: 8, scale: 1, blockSize: 2, maxBlocksPerSeq: 2 };
    const out = new Float32Array(8);
    expect(() =>
      nb.pagedAttention(
        out,
        out,
        new Float32Array(32),
        new Uint16Array(32),
        Int32Array.from([0]),
        Int32Array.from([0]),
        Int32Array.from([0, 1]),
        1,
        params,
      ),
    ).toThrow(/both/);
  });

  it("equals contiguous attention when the blocks are laid out in order", () => {
    const g = gen(`${isa}/paged/contiguous`);
    const p = { nHeads: 4, nKvHeads: 2, headDim: 32, scale: 0.2 };
    const len = 50;
    const bs = 8;
    const k = g.uniform(56 * 64, 2);
    const v = g.uniform(56 * 64, 2);
    const q = g.uniform(3 * 128, 2);
    const positions = Int32Array.from([47, 48, 49]);
    const a = new Float32Array(q.length);
    const b = new Float32Array(q.length);
    nb.attention(a, q, k, v, positions, 3, p);
    const tables = Int32Array.from({ length: 7 }, (_, i) => i);
    nb.pagedAttention(b, q, k, v, positions, new Int32Array(3), tables, 3, {
      ...p,
      blockSize: bs,
      maxBlocksPerSeq: 7,
    });
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(len).toBeGreaterThan(0);
  });

  it("a long prefill chunk (rows split into runs) matches the reference", () => {
    const g = gen(`${isa}/paged/long`);
    const p = { nHeads: 4, nKvHeads: 2, headDim: 16, scale: 0.25, blockSize: 4, maxBlocksPerSeq: 20 };
    const n = 70;
    const k = g.uniform(2 * 20 * 4 * 32, 2);
    const v = g.uniform(2 * 20 * 4 * 32, 2);
    const q = g.uniform(n * 64, 2);
    const tables = Int32Array.from({ length: 40 }, (_, i) => 39 - i);
    // rows 0..64 of sequence 0 (positions 5..69), then 5 rows of sequence 1
    const seqOfRow = Int32Array.from({ length: n }, (_, i) => (i < 65 ? 0 : 1));
    const positions = Int32Array.from({ length: n }, (_, i) => (i < 65 ? 5 + i : 10 + i - 65));
    const want = new Float32Array(q.length);
    const got = new Float32Array(q.length);
    ref.pagedAttention(want, q, k, v, positions, seqOfRow, tables, n, p);
    nb.pagedAttention(got, q, k, v, positions, seqOfRow, tables, n, p);
    expect(relErr(got, want)).toBeLessThanOrEqual(2e-5);
  });

  it("rejects block indices outside the cache", () => {
    const k = new Float32Array(4 * 8);
    const out = new Float32Array(8);
    const params = { nHeads: 1, nKvHeads: 1, headDim: 8, scale: 1, blockSize: 2, maxBlocksPerSeq: 2 };
    expect(() =>
      nb.pagedAttention(
        out,
        out,
        k,
        k,
        Int32Array.from([2]),
        Int32Array.from([0]),
        Int32Array.from([0, 5]),
        1,
        params,
      ),
    ).toThrow(/outside the cache/);
  });
});
