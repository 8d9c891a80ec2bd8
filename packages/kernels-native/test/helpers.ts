import { GGMLType } from "@ryzanstein/core-tensor";

/** Seed of this run: RYZANSTEIN_TEST_SEED, or a fresh one. Printed in every failure message. */
export const SEED = process.env.RYZANSTEIN_TEST_SEED
  ? Number(process.env.RYZANSTEIN_TEST_SEED)
  : Date.now() % 2 ** 31;

/** mulberry32: small seeded PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded generator for one test: the run seed mixed with a label, so each test draws fresh data. */
export function gen(label: string): {
  seed: number;
  uniform: (n: number, scale?: number) => Float32Array;
  int: (max: number) => number;
  rand: () => number;
} {
  let h = SEED >>> 0;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 16777619) >>> 0;
  const rand = rng(h);
  return {
    seed: h,
    rand,
    uniform: (n, scale = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale),
    int: (max) => Math.floor(rand() * max),
  };
}

/** max |got - want| / max |want|: error relative to the output's scale (robust to cancellation). */
export function relErr(got: Float32Array, want: Float32Array): number {
  let maxAbs = 0;
  let maxErr = 0;
  for (let i = 0; i < want.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(want[i]));
    const e = Math.abs(got[i] - want[i]);
    maxErr = Math.max(maxErr, Number.isNaN(e) ? Number.POSITIVE_INFINITY : e);
  }
  return maxAbs === 0 ? maxErr : maxErr / maxAbs;
}

/** Failure context: the seed to replay with, plus what was tested. */
export function ctx(what: string): string {
  return `${what} (replay with RYZANSTEIN_TEST_SEED=${SEED})`;
}

export const FORMATS = [
  { type: GGMLType.F32, name: "f32", block: false },
  { type: GGMLType.F16, name: "f16", block: false },
  { type: GGMLType.BF16, name: "bf16", block: false },
  { type: GGMLType.Q8_0, name: "q8_0", block: true },
  { type: GGMLType.Q4_0, name: "q4_0", block: true },
] as const;

/**
 * Matmul tolerances (error relative to max |y|). F32: only the summation order differs. F16/BF16:
 * products are exact in f32, the order of accumulation differs (vdpbf16ps pairs, FMA lanes).
 * Q8_0/Q4_0: the reference quantizes activations exactly as the kernels do and integer block
 * sums are exact, so only float summation order differs: tight.
 */
export const MATMUL_TOL: Record<string, number> = {
  f32: 1e-5,
  f16: 1e-3,
  bf16: 1e-3,
  q8_0: 1e-4,
  q4_0: 1e-4,
};

/** Index of the first element that differs bit for bit (NaN equals NaN), or -1. */
export function firstMismatch(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

/**
 * A paged-attention case: `nSeqs` sequences of random lengths over a shuffled pool of KV blocks
 * (`spare` more than they need), their block tables, and query rows (the last 1..`maxChunk`
 * positions of each sequence: a prefill chunk or a decode row). `cache(g, rows, rowSize, scale)`
 * makes the K (scale 3) and V (scale 2) arrays of `rows` cache rows.
 */
export function pagedCase<C>(
  label: string,
  shape: { nHeads: number; nKvHeads: number; headDim: number; blockSize: number },
  cache: (g: ReturnType<typeof gen>, rows: number, rowSize: number, scale: number) => C,
  pool = { nSeqs: 3, maxBlocks: 9, spare: 4, maxChunk: 4 },
) {
  const { nHeads, nKvHeads, headDim, blockSize } = shape;
  const { nSeqs, maxBlocks } = pool;
  const g = gen(label);
  const nBlocks = nSeqs * maxBlocks + pool.spare;
  const kvRow = nKvHeads * headDim;
  const k = cache(g, nBlocks * blockSize, kvRow, 3);
  const v = cache(g, nBlocks * blockSize, kvRow, 2);
  const perm = Array.from({ length: nBlocks }, (_, i) => i).sort(() => g.rand() - 0.5);
  const tables = new Int32Array(nSeqs * maxBlocks).fill(-1);
  const lens = Array.from({ length: nSeqs }, () => 1 + g.int(maxBlocks * blockSize));
  let next = 0;
  for (let s = 0; s < nSeqs; s++)
    for (let b = 0; b < Math.ceil(lens[s] / blockSize); b++) tables[s * maxBlocks + b] = perm[next++];
  const seqOfRow: number[] = [];
  const positions: number[] = [];
  for (let s = 0; s < nSeqs; s++) {
    const m = Math.min(lens[s], 1 + g.int(pool.maxChunk));
    for (let i = 0; i < m; i++) {
      seqOfRow.push(s);
      positions.push(lens[s] - m + i);
    }
  }
  const n = positions.length;
  return {
    k,
    v,
    n,
    tables,
    q: g.uniform(n * nHeads * headDim, 3),
    seqOfRow: Int32Array.from(seqOfRow),
    positions: Int32Array.from(positions),
    params: {
      nHeads,
      nKvHeads,
      headDim,
      scale: 1 / Math.sqrt(headDim),
      blockSize,
      maxBlocksPerSeq: maxBlocks,
    },
  };
}
