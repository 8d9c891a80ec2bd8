// Ternary formats for BitNet b1.58-style weights (values in {-1, 0, +1} times one f16 scale per
// 256 elements): TQ2_0 (2 bits per weight) and TQ1_0 (base-3 packing, 1.6875 bits per weight).
// Layouts follow ggml-common.h; `quantizeRowRef` is ggml's (scale = absolute maximum of the block).
// `quantizeRowTernary` is BitNet's absmean ternarization with a caller-chosen scale.
import { GGMLType } from "./dtypes.js";
import { RyzansteinError } from "./errors.js";
import type { FormatTraits } from "./formats.js";
import { f16ToF32, f32ToF16 } from "./half.js";
import { f, getF32, i8, put16, roundHalfAway, u16 } from "./quant-utils.js";

const QK_K = 256;
const POW3 = [1, 3, 9, 27, 81, 243];

/** One trit (0, 1, 2) of a TQ1_0 byte: ggml's `((uint8)(q·3^n) · 3) >> 8`. */
const trit = (q: number, n: number): number => (((q * POW3[n]) & 0xff) * 3) >> 8;

/** Code (0, 1, 2 meaning -1, 0, +1) of element e of a TQ2_0 block at `o`. */
function tq2Code(b: Uint8Array, o: number, e: number): number {
  return (b[o + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
}

/** Code (0, 1, 2) of element e of a TQ1_0 block at `o` (qs[48] at o, qh[4] at o+48). */
function tq1Code(b: Uint8Array, o: number, e: number): number {
  if (e < 160) return trit(b[o + (e & 31)], e >> 5);
  if (e < 240) return trit(b[o + 32 + ((e - 160) & 15)], (e - 160) >> 4);
  return trit(b[o + 48 + ((e - 240) & 3)], (e - 240) >> 2);
}

/** Packs 256 codes (0..2) as a TQ2_0 block's quants at `o`. */
function packTq2(codes: Uint8Array, dst: Uint8Array, o: number): void {
  for (let j = 0; j < 64; j += 32) {
    for (let m = 0; m < 32; m++) {
      let q = 0;
      for (let n = 0; n < 4; n++) q += (codes[4 * j + m + n * 32] & 3) << (2 * n);
      dst[o + j + m] = q;
    }
  }
}

/** Packs 256 codes (0..2) as a TQ1_0 block's qs/qh at `o` (5 trits per byte, rescaled by 256/243). */
function packTq1(codes: Uint8Array, dst: Uint8Array, o: number): void {
  const ceil243 = (q: number) => Math.floor((q * 256 + 242) / 243);
  for (let m = 0; m < 32; m++) {
    let q = 0;
    for (let n = 0; n < 5; n++) q = q * 3 + codes[m + n * 32];
    dst[o + m] = ceil243(q);
  }
  for (let m = 0; m < 16; m++) {
    let q = 0;
    for (let n = 0; n < 5; n++) q = q * 3 + codes[160 + m + n * 16];
    dst[o + 32 + m] = ceil243(q);
  }
  for (let j = 0; j < 4; j++) {
    let q = 0;
    for (let m = 0; m < 4; m++) q = q * 3 + codes[240 + j + m * 4];
    dst[o + 48 + j] = ceil243(q * 3);
  }
}

const codes = new Uint8Array(QK_K);

/** ggml's reference: d = max|x| of the block, code = lroundf(x/d) + 1. */
function quantizeAmax(
  src: Float32Array,
  so: number,
  dst: Uint8Array,
  d: number,
  n: number,
  typeSize: number,
  pack: (c: Uint8Array, dst: Uint8Array, o: number) => void,
): void {
  for (let b = 0; b < n / QK_K; b++) {
    const x = so + b * QK_K;
    let amax = 0;
    for (let j = 0; j < QK_K; j++) amax = Math.max(amax, Math.abs(src[x + j]));
    const id = amax ? f(1 / amax) : 0;
    for (let j = 0; j < QK_K; j++) codes[j] = roundHalfAway(f(src[x + j] * id)) + 1;
    const o = d + b * typeSize;
    pack(codes, dst, o);
    put16(dst, o + typeSize - 2, f32ToF16(amax));
  }
}

/** Sum over a block of code·activation, with `code(e)` in 0..2 (-1 applied here). */
function ternaryDot(
  n: number,
  w: Uint8Array,
  wo: number,
  x: Uint8Array,
  xo: number,
  typeSize: number,
  code: (b: Uint8Array, o: number, e: number) => number,
): number {
  let s = 0;
  for (let b = 0; b < n / QK_K; b++) {
    const o = wo + b * typeSize;
    const ox = xo + b * 292;
    let sumi = 0;
    for (let e = 0; e < QK_K; e++) sumi += (code(w, o, e) - 1) * i8(x[ox + 4 + e]);
    s += sumi * getF32(x, ox) * f16ToF32(u16(w, o + typeSize - 2));
  }
  return s;
}

function dequantTernary(
  src: Uint8Array,
  so: number,
  dst: Float32Array,
  d: number,
  n: number,
  typeSize: number,
  code: (b: Uint8Array, o: number, e: number) => number,
): void {
  for (let b = 0; b < n / QK_K; b++) {
    const o = so + b * typeSize;
    const scale = f16ToF32(u16(src, o + typeSize - 2));
    for (let e = 0; e < QK_K; e++) dst[d + b * QK_K + e] = f((code(src, o, e) - 1) * scale);
  }
}

// TQ2_0: 64 bytes of 2-bit codes (element e: byte 32·(e>>7) + (e&31), bits 2·((e>>5)&3)), f16 d.
export const tq2_0Traits: FormatTraits = {
  type: GGMLType.TQ2_0,
  blockSize: QK_K,
  typeSize: 66,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow: (src, so, dst, d, n) => dequantTernary(src, so, dst, d, n, 66, tq2Code),
  quantizeRowRef: (src, so, dst, d, n) => quantizeAmax(src, so, dst, d, n, 66, packTq2),
  vecDotRef: (n, w, wo, x, xo) => ternaryDot(n, w, wo, x, xo, 66, tq2Code),
};

// TQ1_0: 48 bytes of 5 trits + 4 bytes of 4 trits (fixed-point base 3), f16 d.
export const tq1_0Traits: FormatTraits = {
  type: GGMLType.TQ1_0,
  blockSize: QK_K,
  typeSize: 54,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow: (src, so, dst, d, n) => dequantTernary(src, so, dst, d, n, 54, tq1Code),
  quantizeRowRef: (src, so, dst, d, n) => quantizeAmax(src, so, dst, d, n, 54, packTq1),
  vecDotRef: (n, w, wo, x, xo) => ternaryDot(n, w, wo, x, xo, 54, tq1Code),
};

/** Mean absolute value of `values`: BitNet b1.58's per-tensor weight scale γ. */
export function absmeanScale(values: Float32Array): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += Math.abs(values[i]);
  return values.length ? s / values.length : 0;
}

/**
 * BitNet b1.58 ternarization into TQ1_0 or TQ2_0: code = clamp(round(x / scale), -1, 1), every
 * block storing `scale` (use {@link absmeanScale} of the whole tensor for BitNet's absmean rule).
 * `values.length` must be a multiple of 256.
 */
export function quantizeRowTernary(
  type: GGMLType.TQ1_0 | GGMLType.TQ2_0,
  values: Float32Array,
  scale: number,
): Uint8Array {
  if (values.length % QK_K !== 0) {
    throw new RyzansteinError(
      "SHAPE_MISMATCH",
      `ternary quantization needs a multiple of ${QK_K} values, got ${values.length}`,
    );
  }
  if (!(scale >= 0) || !Number.isFinite(scale)) {
    throw new RyzansteinError("INVALID_ARGUMENT", `ternary scale must be a finite number >= 0, got ${scale}`);
  }
  const typeSize = type === GGMLType.TQ2_0 ? 66 : 54;
  const pack = type === GGMLType.TQ2_0 ? packTq2 : packTq1;
  const out = new Uint8Array((values.length / QK_K) * typeSize);
  const stored = f16ToF32(f32ToF16(scale));
  for (let b = 0; b < values.length / QK_K; b++) {
    for (let j = 0; j < QK_K; j++) {
      codes[j] = stored ? Math.max(-1, Math.min(1, roundHalfAway(values[b * QK_K + j] / stored))) + 1 : 1;
    }
    pack(codes, out, b * typeSize);
    put16(out, b * typeSize + typeSize - 2, f32ToF16(scale));
  }
  return out;
}
