// 32-element block formats beside Q4_0/Q8_0: Q4_1 (scale + min), Q5_0 (5-bit symmetric) and Q8_1,
// the activation format ggml pairs with Q4_1. Layouts follow ggml-common.h, rounding follows
// ggml-quants.c's `quantize_row_*_ref`.
import { GGMLType } from "./dtypes.js";
import type { FormatTraits } from "./formats.js";
import { f16ToF32, f32ToF16 } from "./half.js";
import { f, i8, nearestInt, put16, roundHalfAway, truncToI8, u16 } from "./quant-utils.js";

// Q4_1: f16 d, f16 m, 16 bytes of nibbles (element j low, j+16 high); value = q*d + m.
export const q4_1Traits: FormatTraits = {
  type: GGMLType.Q4_1,
  blockSize: 32,
  typeSize: 20,
  vecDotType: GGMLType.Q8_1,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const o = so + b * 20;
      const scale = f16ToF32(u16(src, o));
      const m = f16ToF32(u16(src, o + 2));
      for (let j = 0; j < 16; j++) {
        const q = src[o + 4 + j];
        dst[d + b * 32 + j] = f(f((q & 0xf) * scale) + m);
        dst[d + b * 32 + j + 16] = f(f((q >> 4) * scale) + m);
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const x = so + b * 32;
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < 32; j++) {
        const v = src[x + j];
        if (v < min) min = v;
        if (v > max) max = v;
      }
      const scale = f(f(max - min) / 15);
      const inv = scale ? f(1 / scale) : 0;
      const o = d + b * 20;
      put16(dst, o, f32ToF16(scale));
      put16(dst, o + 2, f32ToF16(min));
      for (let j = 0; j < 16; j++) {
        const x0 = f(f(src[x + j] - min) * inv);
        const x1 = f(f(src[x + j + 16] - min) * inv);
        const q0 = Math.min(15, truncToI8(f(x0 + 0.5)));
        const q1 = Math.min(15, truncToI8(f(x1 + 0.5)));
        dst[o + 4 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
      }
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / 32; b++) {
      const ow = wo + b * 20;
      const ox = xo + b * 36;
      let sumi = 0;
      for (let j = 0; j < 16; j++) {
        const q = w[ow + 4 + j];
        sumi += (q & 0xf) * i8(x[ox + 4 + j]) + (q >> 4) * i8(x[ox + 4 + j + 16]);
      }
      const dw = f16ToF32(u16(w, ow));
      const mw = f16ToF32(u16(w, ow + 2));
      s += sumi * dw * f16ToF32(u16(x, ox)) + mw * f16ToF32(u16(x, ox + 2));
    }
    return s;
  },
};

// Q5_0: f16 d, uint32 qh (bit j: 5th bit of element j), 16 bytes of low nibbles; value = (q-16)*d.
export const q5_0Traits: FormatTraits = {
  type: GGMLType.Q5_0,
  blockSize: 32,
  typeSize: 22,
  vecDotType: GGMLType.Q8_0,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const o = so + b * 22;
      const scale = f16ToF32(u16(src, o));
      const qh = (src[o + 2] | (src[o + 3] << 8) | (src[o + 4] << 16) | (src[o + 5] << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const q = src[o + 6 + j];
        const h0 = ((qh >>> j) << 4) & 0x10;
        const h1 = (qh >>> (j + 12)) & 0x10;
        dst[d + b * 32 + j] = f((((q & 0xf) | h0) - 16) * scale);
        dst[d + b * 32 + j + 16] = f((((q >> 4) | h1) - 16) * scale);
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const x = so + b * 32;
      let amax = 0;
      let max = 0;
      for (let j = 0; j < 32; j++) {
        const v = src[x + j];
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      const scale = f(max / -16);
      const inv = scale ? f(1 / scale) : 0;
      const o = d + b * 22;
      put16(dst, o, f32ToF16(scale));
      let qh = 0;
      for (let j = 0; j < 16; j++) {
        const q0 = Math.min(31, truncToI8(f(f(src[x + j] * inv) + 16.5))) & 0xff;
        const q1 = Math.min(31, truncToI8(f(f(src[x + j + 16] * inv) + 16.5))) & 0xff;
        dst[o + 6 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
        qh |= ((q0 & 0x10) >> 4) << j;
        qh |= ((q1 & 0x10) >> 4) << (j + 16);
      }
      dst[o + 2] = qh & 0xff;
      dst[o + 3] = (qh >>> 8) & 0xff;
      dst[o + 4] = (qh >>> 16) & 0xff;
      dst[o + 5] = (qh >>> 24) & 0xff;
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / 32; b++) {
      const ow = wo + b * 22;
      const ox = xo + b * 34;
      const qh = (w[ow + 2] | (w[ow + 3] << 8) | (w[ow + 4] << 16) | (w[ow + 5] << 24)) >>> 0;
      let sumi = 0;
      for (let j = 0; j < 16; j++) {
        const q = w[ow + 6 + j];
        const c0 = ((q & 0xf) | (((qh >>> j) << 4) & 0x10)) - 16;
        const c1 = ((q >> 4) | ((qh >>> (j + 12)) & 0x10)) - 16;
        sumi += c0 * i8(x[ox + 2 + j]) + c1 * i8(x[ox + 2 + j + 16]);
      }
      s += sumi * (f16ToF32(u16(w, ow)) * f16ToF32(u16(x, ox)));
    }
    return s;
  },
};

// Q8_1: f16 d, f16 s = d * sum(q), 32 int8; the activation format of Q4_1.
export const q8_1Traits: FormatTraits = {
  type: GGMLType.Q8_1,
  blockSize: 32,
  typeSize: 36,
  vecDotType: GGMLType.Q8_1,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const o = so + b * 36;
      const scale = f16ToF32(u16(src, o));
      for (let j = 0; j < 32; j++) dst[d + b * 32 + j] = f(i8(src[o + 4 + j]) * scale);
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const x = so + b * 32;
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[x + j]));
      const scale = f(amax / 127);
      const inv = scale ? f(1 / scale) : 0;
      const o = d + b * 36;
      put16(dst, o, f32ToF16(scale));
      let sum = 0;
      for (let j = 0; j < 32; j++) {
        const q = roundHalfAway(f(src[x + j] * inv));
        dst[o + 4 + j] = q & 0xff;
        sum += i8(q);
      }
      put16(dst, o + 2, f32ToF16(f(sum * scale)));
    }
  },
  // ggml's x86 quantize_row_q8_1 (what llama.cpp's AVX2 build runs on activations): 127/amax and
  // halves to even, like Q8_0's activation path.
  quantizeActivationsRef(src, so, dst, d, n) {
    for (let b = 0; b < n / 32; b++) {
      const x = so + b * 32;
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[x + j]));
      const scale = f(amax / 127);
      const inv = amax ? f(127 / amax) : 0;
      const o = d + b * 36;
      put16(dst, o, f32ToF16(scale));
      let sum = 0;
      for (let j = 0; j < 32; j++) {
        const q = nearestInt(f(src[x + j] * inv));
        dst[o + 4 + j] = q & 0xff;
        sum += i8(q);
      }
      put16(dst, o + 2, f32ToF16(f(sum * scale)));
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / 32; b++) {
      const ow = wo + b * 36;
      const ox = xo + b * 36;
      let sumi = 0;
      for (let j = 0; j < 32; j++) sumi += i8(w[ow + 4 + j]) * i8(x[ox + 4 + j]);
      s += sumi * (f16ToF32(u16(w, ow)) * f16ToF32(u16(x, ox)));
    }
    return s;
  },
};
