// Plain TypeScript reference of the ternary lookup-table layout and kernel (native/ternary_lut.h),
// for tests: the packed bytes, the per-group activation tables, and the matmul over them in
// llama.cpp's float order (per block, 8 lanes of exact integers, each added to its own float
// accumulator with one FMA by d·yd; the lanes reduced as hsum_float_8).
import { FORMAT_TRAITS, f16ToF32, fmaF32, GGMLType } from "@ryzanstein/core-tensor";

const QK_K = 256;
const ROWS = 32; // rows per tile
const LANES = 8; // llama.cpp's float lanes
const LANE_GROUPS = 11; // 10 groups of 3 columns and one of 2 per lane and block
const LANE_OFF = 2 * ROWS; // first lane record, after the 32 f16 scales
const LANE_BYTES = 7 * ROWS; // 5 index vectors, the sign vector, group 10's vector
const SGN_VEC = 5;
const EXT_VEC = 6;
/** Bytes of one tile-block: 32 f16 scales, then 8 lane records of 7 x 32 bytes. */
export const TL_BLOCK_BYTES = LANE_OFF + LANES * LANE_BYTES;

const POW3 = [1, 3, 9, 27, 81];
const trit = (q: number, n: number): number => (((q * POW3[n]) & 0xff) * 3) >> 8;

/** Trit (-1, 0, 1) of column e of the block at `o`. */
function tritOf(type: GGMLType, b: Uint8Array, o: number, e: number): number {
  if (type === GGMLType.TQ2_0) return ((b[o + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3) - 1;
  if (e < 160) return trit(b[o + (e & 31)], e >> 5) - 1;
  if (e < 240) return trit(b[o + 32 + ((e - 160) & 15)], (e - 160) >> 4) - 1;
  return trit(b[o + 48 + ((e - 240) & 3)], (e - 240) >> 2) - 1;
}

/** Column of a block at position i (0..31) of lane L: llama.cpp's lane L holds (e mod 32) div 4 = L. */
const colOf = (lane: number, i: number): number => 32 * (i >> 2) + 4 * lane + (i & 3);

/** Offset in a block of the index byte of group g of lane L (row 0), and the nibble's shift. */
function idxPos(lane: number, g: number): [number, number] {
  return [LANE_OFF + LANE_BYTES * lane + 32 * (g < 10 ? g >> 1 : EXT_VEC), g < 10 ? 4 * (g & 1) : 0];
}

/** Offset in a block of the sign byte of group g < 10 of lane L (row 0), and its bit. */
function sgnPos(lane: number, g: number): [number, number] {
  return [LANE_OFF + LANE_BYTES * lane + 32 * (g < 7 ? SGN_VEC : EXT_VEC), g < 7 ? g + 1 : g - 3];
}

/** Bytes of the packed layout of a rows x cols ternary matrix. */
export function tlPackedBytes(rows: number, cols: number): number {
  return Math.ceil(rows / ROWS) * (cols / QK_K) * TL_BLOCK_BYTES;
}

/** The packed LUT layout of a TQ1_0 / TQ2_0 matrix in the file layout (codes must be ternary). */
export function packTernaryLut(type: GGMLType, data: Uint8Array, rows: number, cols: number): Uint8Array {
  const nb = cols / QK_K;
  const bb = type === GGMLType.TQ2_0 ? 66 : 54;
  const out = new Uint8Array(tlPackedBytes(rows, cols));
  for (let t = 0; t < Math.ceil(rows / ROWS); t++) {
    for (let b = 0; b < nb; b++) {
      const o = (t * nb + b) * TL_BLOCK_BYTES;
      for (let r = 0; r < ROWS && t * ROWS + r < rows; r++) {
        const src = ((t * ROWS + r) * nb + b) * bb;
        out[o + 2 * r] = data[src + bb - 2];
        out[o + 2 * r + 1] = data[src + bb - 1];
        for (let lane = 0; lane < LANES; lane++) {
          const w = (i: number): number => tritOf(type, data, src, colOf(lane, i));
          out[o + sgnPos(lane, 0)[0] + r] |= 1; // bit 0 of the sign vector: never a zero byte
          for (let g = 0; g < LANE_GROUPS - 1; g++) {
            const v = 9 * w(3 * g) + 3 * w(3 * g + 1) + w(3 * g + 2);
            const [io, shift] = idxPos(lane, g);
            out[o + io + r] |= Math.abs(v) << shift;
            const [so, bit] = sgnPos(lane, g);
            if (v < 0) out[o + so + r] |= 1 << bit;
          }
          out[o + idxPos(lane, 10)[0] + r] |= 1 + 3 * (w(30) + 1) + (w(31) + 1);
        }
      }
    }
  }
  return out;
}

/** Balanced-ternary digits (9s, 3s, 1s) of m in 0..13. */
function digits(m: number): [number, number, number] {
  const d: [number, number, number] = [0, 0, 0];
  let v = m;
  for (let k = 2; k >= 0; k--) {
    let r = v % 3;
    v = Math.floor(v / 3);
    if (r === 2) {
      r = -1;
      v += 1;
    }
    d[k] = r;
  }
  return d;
}
/** Weights of the table entries: groups 0..9 (m = 0..13 balanced ternary), group 10 (m = 1..9 = 1 + 3(t0+1) + (t1+1)). */
const DIGITS = Array.from({ length: 16 }, (_, m) => (m < 14 ? digits(m) : [0, 0, 0]));
const PAIR_DIGITS = Array.from({ length: 16 }, (_, m) =>
  m >= 1 && m <= 9 ? [Math.floor((m - 1) / 3) - 1, ((m - 1) % 3) - 1, 0] : [0, 0, 0],
);

/** ggml's hsum_float_8. */
const hsum8 = (l: Float32Array): number => {
  const f = Math.fround;
  return f(f(f(l[0] + l[4]) + f(l[2] + l[6])) + f(f(l[1] + l[5]) + f(l[3] + l[7])));
};

/**
 * y[t, r] over the packed layout: activations quantized to Q8_K by core-tensor's reference, one
 * table of partial sums per group (T[m] = Σ digit_i(m)·q_i), each weight group gathering T[|v|]
 * with the sign of v; per block and lane the integer Σ t·q plus the lane's correction
 * Σ_lane q − bsums[2L] − bsums[2L+1] (llama.cpp's lane integer), FMA'd into the lane's float.
 */
export function lutMatmulRef(
  packed: Uint8Array,
  rows: number,
  cols: number,
  x: Float32Array,
  n: number,
): Float32Array {
  const nb = cols / QK_K;
  const q8k = FORMAT_TRAITS[GGMLType.Q8_K];
  const xq = new Uint8Array(nb * q8k.typeSize);
  const xv = new DataView(xq.buffer);
  const y = new Float32Array(n * rows);
  const tables = new Int32Array(nb * LANES * LANE_GROUPS * 16);
  const corr = new Int32Array(nb * LANES);
  const acc = new Float32Array(LANES);
  const pv = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  for (let t = 0; t < n; t++) {
    q8k.quantizeRowRef(x, t * cols, xq, 0, cols);
    for (let b = 0; b < nb; b++) {
      const q = new Int8Array(xq.buffer, b * q8k.typeSize + 4, QK_K);
      const bsumOff = b * q8k.typeSize + 4 + QK_K;
      for (let lane = 0; lane < LANES; lane++) {
        let c = -xv.getInt16(bsumOff + 4 * lane, true) - xv.getInt16(bsumOff + 4 * lane + 2, true);
        for (let i = 0; i < 32; i++) c += q[colOf(lane, i)];
        corr[b * LANES + lane] = c;
        const a = (i: number): number => (i < 32 ? q[colOf(lane, i)] : 0);
        for (let g = 0; g < LANE_GROUPS; g++) {
          for (let m = 0; m < 16; m++) {
            const dg = g < 10 ? DIGITS[m] : PAIR_DIGITS[m];
            let s = 0;
            for (let i = 0; i < 3; i++) s += dg[i] * a(3 * g + i);
            tables[((b * LANES + lane) * LANE_GROUPS + g) * 16 + m] = s;
          }
        }
      }
    }
    for (let r = 0; r < rows; r++) {
      const tile = r >> 5;
      const lr = r & 31;
      acc.fill(0);
      for (let b = 0; b < nb; b++) {
        const o = (tile * nb + b) * TL_BLOCK_BYTES;
        const d = Math.fround(
          f16ToF32(pv.getUint16(o + 2 * lr, true)) * xv.getFloat32(b * q8k.typeSize, true),
        );
        for (let lane = 0; lane < LANES; lane++) {
          let isum = corr[b * LANES + lane];
          for (let g = 0; g < LANE_GROUPS; g++) {
            const [io, shift] = idxPos(lane, g);
            const m = (packed[o + io + lr] >> shift) & 15;
            let neg = 0;
            if (g < 10) {
              const [so, bit] = sgnPos(lane, g);
              neg = (packed[o + so + lr] >> bit) & 1;
            }
            const v = tables[((b * LANES + lane) * LANE_GROUPS + g) * 16 + m];
            isum += neg ? -v : v;
          }
          acc[lane] = fmaF32(isum, d, acc[lane]);
        }
      }
      y[t * rows + r] = hsum8(acc);
    }
  }
  return y;
}
