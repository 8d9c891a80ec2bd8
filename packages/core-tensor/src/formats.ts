import { GGMLType, TYPE_INFO } from "./dtypes.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half.js";
import { i8, nearestInt, put16, roundHalfAway, truncToI8, u16 } from "./quant-utils.js";
import { q2_KTraits, q3_KTraits, q4_KTraits, q5_KTraits, q6_KTraits, q8_KTraits } from "./quants-k.js";
import { q4_1Traits, q5_0Traits, q8_1Traits } from "./quants-legacy.js";
import { tq1_0Traits, tq2_0Traits } from "./quants-ternary.js";

/**
 * Formats the engine can compute with. Each has one row in {@link FORMAT_TRAITS}. Q8_1 and Q8_K
 * are activation formats (the `vecDotType` of Q4_1 and of the K-quants / ternary formats).
 */
export type ComputeFormat =
  | GGMLType.F32
  | GGMLType.F16
  | GGMLType.BF16
  | GGMLType.Q8_0
  | GGMLType.Q4_0
  | GGMLType.Q4_1
  | GGMLType.Q5_0
  | GGMLType.Q8_1
  | GGMLType.Q2_K
  | GGMLType.Q3_K
  | GGMLType.Q4_K
  | GGMLType.Q5_K
  | GGMLType.Q6_K
  | GGMLType.Q8_K
  | GGMLType.TQ1_0
  | GGMLType.TQ2_0;

/**
 * Everything the reference path knows about one weight format (ggml's `type_traits` row).
 * Rows operate on raw bytes in the file layout; offsets are in bytes (`src`) or elements (`dst`).
 */
export interface FormatTraits {
  /** The format this row describes. */
  readonly type: ComputeFormat;
  /** Elements per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
  /** The format activations are converted to before a dot product with this format (ggml's `vec_dot_type`). */
  readonly vecDotType: ComputeFormat;
  /** Decodes `n` elements starting at byte `srcOffset` into `dst[dstOffset..]`. */
  dequantizeRow(src: Uint8Array, srcOffset: number, dst: Float32Array, dstOffset: number, n: number): void;
  /** Encodes `n` elements (a multiple of the block size) with ggml's reference rounding. */
  quantizeRowRef(src: Float32Array, srcOffset: number, dst: Uint8Array, dstOffset: number, n: number): void;
  /**
   * Encodes activations when they differ from {@link quantizeRowRef}: ggml's x86 SIMD path for
   * Q8_0 and Q8_1 scales by `127/amax` and rounds halves to even, while its reference (used for weights in
   * files) scales by `1/(amax/127)` and rounds halves away from zero. Absent: same as quantizeRowRef.
   */
  quantizeActivationsRef?(
    src: Float32Array,
    srcOffset: number,
    dst: Uint8Array,
    dstOffset: number,
    n: number,
  ): void;
  /** Dot product of `n` elements of a row of this format with a row already in {@link vecDotType}. */
  vecDotRef(n: number, w: Uint8Array, wOffset: number, x: Uint8Array, xOffset: number): number;
}

const f32Traits: FormatTraits = {
  type: GGMLType.F32,
  blockSize: 1,
  typeSize: 4,
  vecDotType: GGMLType.F32,
  dequantizeRow(src, so, dst, d, n) {
    dst.set(readF32(src, so, n), d);
  },
  quantizeRowRef(src, so, dst, d, n) {
    dst.set(new Uint8Array(src.buffer, src.byteOffset + so * 4, n * 4), d);
  },
  vecDotRef(n, w, wo, x, xo) {
    const a = readF32(w, wo, n);
    const b = readF32(x, xo, n);
    let s = 0;
    for (let i = 0; i < n; i++) s += a[i] * b[i];
    return s;
  },
};

/** Reads `n` f32 values at any byte offset (copies when unaligned). */
function readF32(b: Uint8Array, o: number, n: number): Float32Array {
  const at = b.byteOffset + o;
  if (at % 4 === 0) return new Float32Array(b.buffer, at, n);
  const copy = new Uint8Array(n * 4);
  copy.set(b.subarray(o, o + n * 4));
  return new Float32Array(copy.buffer);
}

const f16Traits: FormatTraits = {
  type: GGMLType.F16,
  blockSize: 1,
  typeSize: 2,
  vecDotType: GGMLType.F16,
  dequantizeRow(src, so, dst, d, n) {
    for (let i = 0; i < n; i++) dst[d + i] = f16ToF32(u16(src, so + 2 * i));
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let i = 0; i < n; i++) put16(dst, d + 2 * i, f32ToF16(src[so + i]));
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let i = 0; i < n; i++) s += f16ToF32(u16(w, wo + 2 * i)) * f16ToF32(u16(x, xo + 2 * i));
    return s;
  },
};

const bf16Traits: FormatTraits = {
  type: GGMLType.BF16,
  blockSize: 1,
  typeSize: 2,
  vecDotType: GGMLType.BF16,
  dequantizeRow(src, so, dst, d, n) {
    for (let i = 0; i < n; i++) dst[d + i] = bf16ToF32(u16(src, so + 2 * i));
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let i = 0; i < n; i++) put16(dst, d + 2 * i, f32ToBf16(src[so + i]));
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let i = 0; i < n; i++) s += bf16ToF32(u16(w, wo + 2 * i)) * bf16ToF32(u16(x, xo + 2 * i));
    return s;
  },
};

// Q8_0: per 32 values one f16 scale d = amax/127 and 32 int8 (ggml `block_q8_0`).
const q8_0Traits: FormatTraits = {
  type: GGMLType.Q8_0,
  blockSize: 32,
  typeSize: 34,
  vecDotType: GGMLType.Q8_0,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const o = so + b * 34;
      const scale = f16ToF32(u16(src, o));
      for (let j = 0; j < 32; j++) dst[d + b * 32 + j] = i8(src[o + 2 + j]) * scale;
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[so + b * 32 + j]));
      const scale = Math.fround(amax / 127);
      const inv = scale ? Math.fround(1 / scale) : 0;
      const o = d + b * 34;
      put16(dst, o, f32ToF16(scale));
      for (let j = 0; j < 32; j++)
        dst[o + 2 + j] = roundHalfAway(Math.fround(src[so + b * 32 + j] * inv)) & 0xff;
    }
  },
  quantizeActivationsRef(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[so + b * 32 + j]));
      const o = d + b * 34;
      put16(dst, o, f32ToF16(Math.fround(amax / 127)));
      const inv = amax ? Math.fround(127 / amax) : 0;
      for (let j = 0; j < 32; j++)
        dst[o + 2 + j] = nearestInt(Math.fround(src[so + b * 32 + j] * inv)) & 0xff;
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / 32; b++) {
      const ow = wo + b * 34;
      const ox = xo + b * 34;
      let sumi = 0;
      for (let j = 0; j < 32; j++) sumi += i8(w[ow + 2 + j]) * i8(x[ox + 2 + j]);
      s += sumi * (f16ToF32(u16(w, ow)) * f16ToF32(u16(x, ox)));
    }
    return s;
  },
};

// Q4_0: per 32 values one f16 scale d = max/-8 and 16 bytes of 4-bit codes q, value = (q-8)*d.
// Byte j holds element j (low nibble) and element j+16 (high nibble).
const q4_0Traits: FormatTraits = {
  type: GGMLType.Q4_0,
  blockSize: 32,
  typeSize: 18,
  vecDotType: GGMLType.Q8_0,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const o = so + b * 18;
      const scale = f16ToF32(u16(src, o));
      for (let j = 0; j < 16; j++) {
        const q = src[o + 2 + j];
        dst[d + b * 32 + j] = ((q & 0xf) - 8) * scale;
        dst[d + b * 32 + j + 16] = ((q >> 4) - 8) * scale;
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      let max = 0;
      for (let j = 0; j < 32; j++) {
        const v = src[so + b * 32 + j];
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      const scale = Math.fround(max / -8);
      const inv = scale ? Math.fround(1 / scale) : 0;
      const o = d + b * 18;
      put16(dst, o, f32ToF16(scale));
      for (let j = 0; j < 16; j++) {
        const x0 = Math.fround(src[so + b * 32 + j] * inv);
        const x1 = Math.fround(src[so + b * 32 + j + 16] * inv);
        const q0 = Math.min(15, truncToI8(Math.fround(x0 + 8.5)));
        const q1 = Math.min(15, truncToI8(Math.fround(x1 + 8.5)));
        dst[o + 2 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
      }
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / 32; b++) {
      const ow = wo + b * 18;
      const ox = xo + b * 34;
      let sumi = 0;
      for (let j = 0; j < 16; j++) {
        const q = w[ow + 2 + j];
        sumi += ((q & 0xf) - 8) * i8(x[ox + 2 + j]) + ((q >> 4) - 8) * i8(x[ox + 2 + j + 16]);
      }
      s += sumi * (f16ToF32(u16(w, ow)) * f16ToF32(u16(x, ox)));
    }
    return s;
  },
};

/**
 * The traits table: one row per compute format. Typed as a `Record` over {@link ComputeFormat},
 * so adding a format without its row does not compile.
 */
export const FORMAT_TRAITS: Readonly<Record<ComputeFormat, FormatTraits>> = {
  [GGMLType.F32]: f32Traits,
  [GGMLType.F16]: f16Traits,
  [GGMLType.BF16]: bf16Traits,
  [GGMLType.Q8_0]: q8_0Traits,
  [GGMLType.Q4_0]: q4_0Traits,
  [GGMLType.Q4_1]: q4_1Traits,
  [GGMLType.Q5_0]: q5_0Traits,
  [GGMLType.Q8_1]: q8_1Traits,
  [GGMLType.Q2_K]: q2_KTraits,
  [GGMLType.Q3_K]: q3_KTraits,
  [GGMLType.Q4_K]: q4_KTraits,
  [GGMLType.Q5_K]: q5_KTraits,
  [GGMLType.Q6_K]: q6_KTraits,
  [GGMLType.Q8_K]: q8_KTraits,
  [GGMLType.TQ1_0]: tq1_0Traits,
  [GGMLType.TQ2_0]: tq2_0Traits,
};

/** True when the engine can compute with weights of this type. */
export function isComputeFormat(type: number): type is ComputeFormat {
  return Object.hasOwn(FORMAT_TRAITS, type);
}

/** Quantizes a float row into a new byte array of the given format. */
export function quantizeRow(type: ComputeFormat, src: Float32Array): Uint8Array {
  const t = FORMAT_TRAITS[type];
  const out = new Uint8Array((src.length / t.blockSize) * t.typeSize);
  t.quantizeRowRef(src, 0, out, 0, src.length);
  return out;
}

/** Decodes a byte row of the given format into floats. */
export function dequantizeRow(type: ComputeFormat, src: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  FORMAT_TRAITS[type].dequantizeRow(src, 0, out, 0, n);
  return out;
}

// Keeps TYPE_INFO and the traits rows consistent at load time.
for (const row of Object.values(FORMAT_TRAITS)) {
  const info = TYPE_INFO[row.type];
  if (info.blockSize !== row.blockSize || info.typeSize !== row.typeSize) {
    throw new Error(`format traits for ${info.name} disagree with TYPE_INFO`);
  }
}
