// Plain TypeScript reference of the ternary lookup-table layout and kernel (native/ternary_lut.h),
// for tests: the packed bytes, the per-group activation tables, and the matmul over them with the
// float operations of the native kernels (per block: acc = f32(acc + f32(f32(d·yd)·isum))).
import { FORMAT_TRAITS, f16ToF32, GGMLType } from "@ryzanstein/core-tensor";

const QK_K = 256;
const GROUPS = 86; // groups of 3 columns per 256-column block (the last one: column 255 + 2 zeros)
const ROWS = 32; // rows per tile
const IDX_OFF = 2 * ROWS;
const SGN_OFF = IDX_OFF + (GROUPS / 2) * ROWS;
/** Bytes of one tile-block: 32 f16 scales, 43 x 32 index bytes, 11 x 32 sign bytes. */
export const TL_BLOCK_BYTES = SGN_OFF + 11 * ROWS;

const POW3 = [1, 3, 9, 27, 81];
const trit = (q: number, n: number): number => (((q * POW3[n]) & 0xff) * 3) >> 8;

/** Trit (-1, 0, 1) of column e of the block at `o` (0 past the block). */
function tritOf(type: GGMLType, b: Uint8Array, o: number, e: number): number {
  if (e >= QK_K) return 0;
  if (type === GGMLType.TQ2_0) return ((b[o + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3) - 1;
  if (e < 160) return trit(b[o + (e & 31)], e >> 5) - 1;
  if (e < 240) return trit(b[o + 32 + ((e - 160) & 15)], (e - 160) >> 4) - 1;
  return trit(b[o + 48 + ((e - 240) & 3)], (e - 240) >> 2) - 1;
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
        for (let g = 0; g < GROUPS; g++) {
          const v =
            9 * tritOf(type, data, src, 3 * g) +
            3 * tritOf(type, data, src, 3 * g + 1) +
            tritOf(type, data, src, 3 * g + 2);
          out[o + IDX_OFF + 32 * (g >> 1) + r] |= Math.abs(v) << (4 * (g & 1));
          if (v < 0) out[o + SGN_OFF + 32 * (g >> 3) + r] |= 1 << (g & 7);
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
const DIGITS = Array.from({ length: 14 }, (_, m) => digits(m));

/**
 * y[t, r] over the packed layout: activations quantized to Q8_K by core-tensor's reference, one
 * table of the 14 partial sums Σ digit_i(m)·q_i per group of 3 activations, each weight group
 * gathering T[|v|] with the sign of v.
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
  const f = Math.fround;
  const tables = new Int32Array(nb * GROUPS * 16);
  for (let t = 0; t < n; t++) {
    q8k.quantizeRowRef(x, t * cols, xq, 0, cols);
    for (let b = 0; b < nb; b++) {
      const q = new Int8Array(xq.buffer, b * q8k.typeSize + 4, QK_K);
      for (let g = 0; g < GROUPS; g++) {
        for (let m = 0; m < 14; m++) {
          let s = 0;
          for (let i = 0; i < 3; i++) s += DIGITS[m][i] * (3 * g + i < QK_K ? q[3 * g + i] : 0);
          tables[(b * GROUPS + g) * 16 + m] = s;
        }
      }
    }
    const pv = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
    for (let r = 0; r < rows; r++) {
      const tile = r >> 5;
      const lr = r & 31;
      let acc = 0;
      for (let b = 0; b < nb; b++) {
        const o = (tile * nb + b) * TL_BLOCK_BYTES;
        let isum = 0;
        for (let g = 0; g < GROUPS; g++) {
          const m = (packed[o + IDX_OFF + 32 * (g >> 1) + lr] >> (4 * (g & 1))) & 15;
          const neg = (packed[o + SGN_OFF + 32 * (g >> 3) + lr] >> (g & 7)) & 1;
          const v = tables[(b * GROUPS + g) * 16 + m];
          isum += neg ? -v : v;
        }
        const d = f16ToF32(pv.getUint16(o + 2 * lr, true));
        const yd = xv.getFloat32(b * q8k.typeSize, true);
        acc = f(acc + f(f(d * yd) * isum));
      }
      y[t * rows + r] = acc;
    }
  }
  return y;
}
