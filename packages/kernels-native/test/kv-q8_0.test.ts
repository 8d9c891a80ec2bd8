import {
  dequantizeKvRowQ8_0,
  kvQ8_0RowBytes,
  quantizeKvRowsQ8_0,
  ReferenceBackend,
  type RopeParams,
  RyzansteinError,
} from "@ryzanstein/core-tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { availableIsas, type Isa, NativeBackend } from "../src/index.js";
import { ctx, gen, pagedCase, relErr } from "./helpers.js";

const ref = new ReferenceBackend();

/** Q8_0 cache rows of `rows` random rows of `rowSize` values (the reference quantizer). */
function q8Cache(g: ReturnType<typeof gen>, rows: number, rowSize: number, scale: number): Uint8Array {
  const src = g.uniform(rows * rowSize, scale);
  const out = new Uint8Array(rows * kvQ8_0RowBytes(rowSize));
  quantizeKvRowsQ8_0(out, 0, src, rows, rowSize);
  return out;
}

/** Q8_0 K/V rows for `pagedCase`: 4 sequences over a pool of 7 blocks each, chunks of up to 3 rows. */
const q8Case = (label: string, nHeads: number, nKvHeads: number, headDim: number, blockSize: number) =>
  pagedCase(label, { nHeads, nKvHeads, headDim, blockSize }, q8Cache, {
    nSeqs: 4,
    maxBlocks: 7,
    spare: 3,
    maxChunk: 3,
  });

describe("Q8_0 KV rows (reference)", () => {
  // Half a step from rounding, plus up to 127 quants times the f16 rounding of the scale (2^-11).
  it("round-trips within 0.56 quantization steps and keeps the layout (quants, then f16 scales)", () => {
    const g = gen("kvq8/ref");
    const rowSize = 96;
    const src = g.uniform(3 * rowSize, 4);
    src.fill(0, rowSize, rowSize + 32); // an all-zero block: scale 0, quants 0
    const q = new Uint8Array(3 * kvQ8_0RowBytes(rowSize));
    expect(kvQ8_0RowBytes(rowSize)).toBe(96 + 6);
    quantizeKvRowsQ8_0(q, 0, src, 3, rowSize);
    const back = new Float32Array(rowSize);
    for (let r = 0; r < 3; r++) {
      dequantizeKvRowQ8_0(q, r, rowSize, back);
      for (let b = 0; b < 3; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[r * rowSize + b * 32 + j]));
        for (let j = 0; j < 32; j++) {
          const i = b * 32 + j;
          expect(Math.abs(back[i] - src[r * rowSize + i])).toBeLessThanOrEqual(
            (amax / 127) * (0.5 + 127 / 2048) + 1e-7,
          );
        }
      }
    }
    expect(Array.from(q.subarray(kvQ8_0RowBytes(rowSize), kvQ8_0RowBytes(rowSize) + 32))).toEqual(
      new Array(32).fill(0),
    );
    expect(() => kvQ8_0RowBytes(48)).toThrow(RyzansteinError);
  });
});

describe.each(availableIsas())("Q8_0 KV cache isa=%s", (isa: Isa) => {
  let nb: NativeBackend;
  beforeAll(() => {
    nb = new NativeBackend({ isa, threads: 2 });
  });
  afterAll(() => nb.dispose());

  it("quantizeKvQ8_0 equals the reference bit for bit (rows at an offset, ties and zero blocks)", () => {
    const g = gen(`kvq8/quant/${isa}`);
    for (const rowSize of [32, 96, 768]) {
      const rows = 1 + g.int(9);
      const src = g.uniform(rows * rowSize, 5);
      // exact ties of x·127/amax: multiples of amax/254 in a block
      for (let j = 0; j < 32; j++) src[j] = j === 0 ? 127 : (j - 16) * 0.5;
      src.fill(0, rowSize - 32, rowSize);
      const at = g.int(4);
      const want = new Uint8Array((rows + at + 1) * kvQ8_0RowBytes(rowSize)).fill(7);
      const got = want.slice();
      ref.quantizeKvQ8_0(want, at, src, rows, rowSize);
      nb.quantizeKvQ8_0(got, at, src, rows, rowSize);
      expect(Buffer.compare(got, want), ctx(`${isa} quantize rowSize=${rowSize}`)).toBe(0);
    }
  });

  // [nHeads, nKvHeads, headDim, blockSize]: aligned heads, heads straddling Q8_0 blocks (12), heads
  // shorter than a vector (7, 8: stories260K's shape), grouped-query attention.
  for (const [nh, nkv, hd, bs] of [
    [4, 4, 16, 16],
    [8, 2, 64, 16],
    [8, 8, 12, 5],
    [16, 8, 12, 3],
    [32, 32, 7, 4],
    [8, 4, 8, 7],
    [12, 12, 64, 16],
  ]) {
    it(`pagedAttention matches the reference: heads=${nh}/${nkv} headDim=${hd} blockSize=${bs}`, () => {
      const c = q8Case(`${isa}/kvq8/${nh}/${nkv}/${hd}/${bs}`, nh, nkv, hd, bs);
      const want = new Float32Array(c.q.length);
      const got = new Float32Array(c.q.length).fill(Number.NaN);
      ref.pagedAttention(want, c.q, c.k, c.v, c.positions, c.seqOfRow, c.tables, c.n, c.params);
      nb.pagedAttention(got, c.q, c.k, c.v, c.positions, c.seqOfRow, c.tables, c.n, c.params);
      expect(relErr(got, want), ctx(`${isa} Q8_0 paged attention`)).toBeLessThanOrEqual(2e-5);
    });
  }

  it("a row's result does not depend on the rows beside it (bit for bit)", () => {
    const c = q8Case(`${isa}/kvq8/alone`, 12, 12, 64, 16);
    const qRow = 12 * 64;
    const batch = new Float32Array(c.q.length);
    nb.pagedAttention(batch, c.q, c.k, c.v, c.positions, c.seqOfRow, c.tables, c.n, c.params);
    for (let t = 0; t < c.n; t++) {
      const one = new Float32Array(qRow);
      nb.pagedAttention(
        one,
        c.q.subarray(t * qRow, (t + 1) * qRow),
        c.k,
        c.v,
        c.positions.subarray(t, t + 1),
        c.seqOfRow.subarray(t, t + 1),
        c.tables,
        1,
        c.params,
      );
      expect(Array.from(one)).toEqual(Array.from(batch.subarray(t * qRow, (t + 1) * qRow)));
    }
  });

  it("is close to attention over the unquantized float cache", () => {
    const g = gen(`${isa}/kvq8/vs-f32`);
    const [nh, nkv, hd, bs] = [8, 4, 32, 8];
    const kvRow = nkv * hd;
    const rows = 64;
    const kf = g.uniform(rows * kvRow, 1);
    const vf = g.uniform(rows * kvRow, 1);
    const kq = new Uint8Array(rows * kvQ8_0RowBytes(kvRow));
    const vq = kq.slice();
    nb.quantizeKvQ8_0(kq, 0, kf, rows, kvRow);
    nb.quantizeKvQ8_0(vq, 0, vf, rows, kvRow);
    const tables = Int32Array.from({ length: 8 }, (_, i) => 7 - i);
    const positions = Int32Array.from([63]);
    const q = g.uniform(nh * hd, 2);
    const p = {
      nHeads: nh,
      nKvHeads: nkv,
      headDim: hd,
      scale: 1 / Math.sqrt(hd),
      blockSize: bs,
      maxBlocksPerSeq: 8,
    };
    const a = new Float32Array(q.length);
    const b = new Float32Array(q.length);
    nb.pagedAttention(a, q, kf, vf, positions, new Int32Array(1), tables, 1, p);
    nb.pagedAttention(b, q, kq, vq, positions, new Int32Array(1), tables, 1, p);
    const err = relErr(b, a);
    expect(err).toBeGreaterThan(0); // it is quantized
    expect(err).toBeLessThan(0.03);
  });

  for (const neox of [false, true]) {
    it(`ropeStoreKV into a Q8_0 cache == rope, rope and quantizeKvQ8_0 (${neox ? "neox" : "normal"})`, () => {
      const g = gen(`kvq8-rope-${isa}-${neox}`);
      const nKvHeads = 1 + g.int(4);
      const headDim = 32 * (1 + g.int(2)) + (nKvHeads % 2 === 0 ? 16 : 0); // 16 | headDim, 32 | row
      const nHeads = nKvHeads * (1 + g.int(3));
      const n = 1 + g.int(12) + (g.int(2) ? 40 : 0);
      const cacheRows = n + 9;
      const kvRow = nKvHeads * headDim;
      const rq: RopeParams = { nHeads, headDim, nDims: headDim, freqBase: 10000, freqScale: 1, neox };
      const rk = { ...rq, nHeads: nKvHeads };
      const positions = Int32Array.from({ length: n }, () => g.int(4096));
      const order = Array.from({ length: cacheRows }, (_, i) => i).sort(() => g.rand() - 0.5);
      const slots = Int32Array.from(order.slice(0, n));
      const q = g.uniform(n * nHeads * headDim, 3);
      const k = g.uniform(n * kvRow, 3);
      const v = g.uniform(n * kvRow, 3);
      const cache = () => new Uint8Array(cacheRows * kvQ8_0RowBytes(kvRow));

      const [q1, k1, keys1, values1] = [q.slice(), k.slice(), cache(), cache()];
      nb.rope(q1, n, positions, rq);
      nb.rope(k1, n, positions, rk);
      for (let i = 0; i < n; i++) {
        ref.quantizeKvQ8_0(keys1, slots[i], k1.subarray(i * kvRow), 1, kvRow);
        ref.quantizeKvQ8_0(values1, slots[i], v.subarray(i * kvRow), 1, kvRow);
      }
      const [q2, k2, keys2, values2] = [q.slice(), k.slice(), cache(), cache()];
      nb.ropeStoreKV(q2, k2, v, n, positions, { q: rq, k: rk }, keys2, values2, slots);
      expect(Array.from(q2)).toEqual(Array.from(q1));
      expect(Buffer.compare(keys2, keys1)).toBe(0);
      expect(Buffer.compare(values2, values1)).toBe(0);
    });
  }

  it("refuses rows that are not a multiple of 32 and caches mixing types", () => {
    const params = { nHeads: 2, nKvHeads: 1, headDim: 24, scale: 1, blockSize: 2, maxBlocksPerSeq: 2 };
    const out = new Float32Array(48);
    const call = (k: Uint8Array | Uint16Array, v: Uint8Array | Uint16Array) => () =>
      nb.pagedAttention(
        out,
        out,
        k,
        v,
        Int32Array.from([0]),
        Int32Array.from([0]),
        Int32Array.from([0, 1]),
        1,
        params,
      );
    expect(call(new Uint8Array(400), new Uint8Array(400))).toThrow(/multiple of 32/);
    expect(call(new Uint8Array(400), new Uint16Array(400))).toThrow(/both/);
    expect(() => nb.quantizeKvQ8_0(new Uint8Array(100), 0, new Float32Array(48), 1, 48)).toThrow(
      RyzansteinError,
    );
    expect(() => nb.quantizeKvQ8_0(new Uint8Array(33), 0, new Float32Array(32), 1, 32)).toThrow(/bytes/);
    const rope: RopeParams = {
      nHeads: 1,
      headDim: 24,
      nDims: 24,
      freqBase: 10000,
      freqScale: 1,
      neox: false,
    };
    expect(() =>
      nb.ropeStoreKV(
        new Float32Array(24),
        new Float32Array(24),
        new Float32Array(24),
        1,
        Int32Array.from([0]),
        { q: rope, k: rope },
        new Uint8Array(100),
        new Uint8Array(100),
        Int32Array.from([0]),
      ),
    ).toThrow(/multiple of 32/);
  });
});
