import { type ComputeFormat, f16ToF32, GGMLType } from "@ryzanstein/core-tensor";

/**
 * Element-wise access to a block whose scales are already fixed: what GPTQ needs to quantize one
 * column at a time with the parameters chosen at the start of the block. A block is first encoded
 * with the format's reference quantizer (that fixes its scales); `set` then replaces the code of
 * one element by the code nearest to `x` under those scales and returns the value it decodes to,
 * exactly as the format's `dequantizeRow` computes it.
 */
export interface ElementCodec {
  /** Stores the code nearest to `x` for element `j` of the block at `block[offset..]`; returns its decoded value. */
  set(block: Uint8Array, offset: number, j: number, x: number): number;
}

const u16 = (b: Uint8Array, o: number): number => b[o] | (b[o + 1] << 8);
const i8 = (v: number): number => (v << 24) >> 24;
const f = Math.fround;
const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v));

/** Q8_0: value = q·d with q in [-127, 127]. */
const q8_0: ElementCodec = {
  set(block, o, j, x) {
    const d = f16ToF32(u16(block, o));
    const q = d === 0 ? 0 : clamp(Math.round(x / d), -127, 127);
    block[o + 2 + j] = q & 0xff;
    return Math.fround(q * d);
  },
};

/** Q4_0: value = (q − 8)·d, q in [0, 15]; byte j holds element j (low nibble) and j+16 (high). */
const q4_0: ElementCodec = {
  set(block, o, j, x) {
    const d = f16ToF32(u16(block, o));
    const q = d === 0 ? 8 : clamp(Math.round(x / d) + 8, 0, 15);
    const at = o + 2 + (j & 15);
    block[at] = j < 16 ? (block[at] & 0xf0) | q : (block[at] & 0x0f) | (q << 4);
    return Math.fround((q - 8) * d);
  },
};

/** Q4_1: value = q·d + m, q in [0, 15]. */
const q4_1: ElementCodec = {
  set(block, o, j, x) {
    const d = f16ToF32(u16(block, o));
    const m = f16ToF32(u16(block, o + 2));
    const q = d === 0 ? 0 : clamp(Math.round((x - m) / d), 0, 15);
    const at = o + 4 + (j & 15);
    block[at] = j < 16 ? (block[at] & 0xf0) | q : (block[at] & 0x0f) | (q << 4);
    return f(f(q * d) + m);
  },
};

/** Q5_0: value = (q − 16)·d, q in [0, 31]; the fifth bit of element j is bit j of `qh`. */
const q5_0: ElementCodec = {
  set(block, o, j, x) {
    const d = f16ToF32(u16(block, o));
    const q = d === 0 ? 16 : clamp(Math.round(x / d) + 16, 0, 31);
    const at = o + 6 + (j & 15);
    const lo = q & 0xf;
    block[at] = j < 16 ? (block[at] & 0xf0) | lo : (block[at] & 0x0f) | (lo << 4);
    const hb = o + 2 + (j >> 3);
    block[hb] = (block[hb] & ~(1 << (j & 7))) | ((q >> 4) << (j & 7));
    return f((q - 16) * d);
  },
};

/** 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml's `get_scale_min_k4`). */
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [(q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4), (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4)];
}

/** Nearest code in [0, max] for value = code·d1 − m1. */
const affineCode = (x: number, d1: number, m1: number, max: number): number =>
  d1 === 0 ? 0 : clamp(Math.round((x + m1) / d1), 0, max);

/** Q4_K: eight sub-blocks of 32 with 6-bit scale/min; value = d·sc·q − dmin·m, q in [0, 15]. */
const q4_K: ElementCodec = {
  set(block, o, e, x) {
    const sub = e >> 5;
    const [sc, m] = scaleMinK4(sub, block, o + 4);
    const d1 = f(f16ToF32(u16(block, o)) * sc);
    const m1 = f(f16ToF32(u16(block, o + 2)) * m);
    const q = affineCode(x, d1, m1, 15);
    const at = o + 16 + 32 * (sub >> 1) + (e & 31);
    const shift = 4 * (sub & 1);
    block[at] = (block[at] & ~(0xf << shift)) | (q << shift);
    return f(f(d1 * q) - m1);
  },
};

/** Q5_K: as Q4_K with a fifth bit per element in `qh` (bit `sub` of byte e&31); q in [0, 31]. */
const q5_K: ElementCodec = {
  set(block, o, e, x) {
    const sub = e >> 5;
    const [sc, m] = scaleMinK4(sub, block, o + 4);
    const d1 = f(f16ToF32(u16(block, o)) * sc);
    const m1 = f(f16ToF32(u16(block, o + 2)) * m);
    const q = affineCode(x, d1, m1, 31);
    const at = o + 48 + 32 * (sub >> 1) + (e & 31);
    const shift = 4 * (sub & 1);
    block[at] = (block[at] & ~(0xf << shift)) | ((q & 0xf) << shift);
    const hb = o + 16 + (e & 31);
    block[hb] = (block[hb] & ~(1 << sub)) | ((q >> 4) << sub);
    return f(f(d1 * q) - m1);
  },
};

/** Q6_K: sixteen sub-blocks of 16 with int8 scales; value = d·sc·q, q in [-32, 31]. */
const q6_K: ElementCodec = {
  set(block, o, e, x) {
    const d1 = f(f16ToF32(u16(block, o + 208)) * i8(block[o + 192 + (e >> 4)]));
    const q = d1 === 0 ? 0 : clamp(Math.round(x / d1), -32, 31);
    const stored = q + 32;
    const c = e >> 7;
    const k = (e >> 5) & 3;
    const l = e & 31;
    const lo = o + 64 * c + l + 32 * (k & 1);
    const loShift = 4 * (k >> 1);
    block[lo] = (block[lo] & ~(0xf << loShift)) | ((stored & 0xf) << loShift);
    const hi = o + 128 + 32 * c + l;
    block[hi] = (block[hi] & ~(3 << (2 * k))) | ((stored >> 4) << (2 * k));
    return f(d1 * q);
  },
};

/** Byte and shift of element e's 2-bit code in a Q2_K/Q3_K `qs` array. */
const twoBitAt = (e: number): [number, number] => [32 * (e >> 7) + (e & 31), 2 * ((e >> 5) & 3)];

/** Q2_K: sixteen sub-blocks of 16 with 4-bit scale and min; value = d·sc·q − dmin·m, q in [0, 3]. */
const q2_K: ElementCodec = {
  set(block, o, e, x) {
    const sc = block[o + (e >> 4)];
    const d1 = f(f16ToF32(u16(block, o + 80)) * (sc & 0xf));
    const m1 = f(f16ToF32(u16(block, o + 82)) * (sc >> 4));
    const q = affineCode(x, d1, m1, 3);
    const [at, shift] = twoBitAt(e);
    block[o + 16 + at] = (block[o + 16 + at] & ~(3 << shift)) | (q << shift);
    return f(f(d1 * q) - m1);
  },
};

/** Signed 6-bit scale j of a Q3_K block (scales at byte `o`). */
function q3Scale(s: Uint8Array, o: number, j: number): number {
  const lo = j < 8 ? s[o + j] & 0xf : s[o + j - 8] >> 4;
  return (lo | (((s[o + 8 + (j % 4)] >> (2 * Math.floor(j / 4))) & 3) << 4)) - 32;
}

/** Q3_K: sixteen sub-blocks of 16 with signed 6-bit scales; value = d·sc·q, q in [-4, 3] (high bit in `hmask`). */
const q3_K: ElementCodec = {
  set(block, o, e, x) {
    const d1 = f(f16ToF32(u16(block, o + 108)) * q3Scale(block, o + 96, e >> 4));
    const q = d1 === 0 ? 0 : clamp(Math.round(x / d1), -4, 3);
    const stored = q + 4;
    const [at, shift] = twoBitAt(e);
    block[o + 32 + at] = (block[o + 32 + at] & ~(3 << shift)) | ((stored & 3) << shift);
    const hb = o + (e & 31);
    const bit = e >> 5;
    block[hb] = (block[hb] & ~(1 << bit)) | ((stored >> 2) << bit);
    return f(d1 * q);
  },
};

/** Element codecs by format: the formats GPTQ can write column by column. */
export const ELEMENT_CODECS: Partial<Record<ComputeFormat, ElementCodec>> = {
  [GGMLType.Q8_0]: q8_0,
  [GGMLType.Q4_0]: q4_0,
  [GGMLType.Q4_1]: q4_1,
  [GGMLType.Q5_0]: q5_0,
  [GGMLType.Q2_K]: q2_K,
  [GGMLType.Q3_K]: q3_K,
  [GGMLType.Q4_K]: q4_K,
  [GGMLType.Q5_K]: q5_K,
  [GGMLType.Q6_K]: q6_K,
};
