// The K-quants: 256-element super-blocks with 6- or 8-bit sub-block scales (ggml's Q2_K..Q6_K) and
// Q8_K, their activation format. Layouts follow ggml-common.h; `quantizeRowRef` reproduces
// ggml-quants.c's `quantize_row_*_ref` (what llama-quantize uses without an importance matrix)
// operation by operation in float32, so the bytes are identical.
import { GGMLType } from "./dtypes.js";
import type { FormatTraits } from "./formats.js";
import { f16ToF32, f32ToF16 } from "./half.js";
import { f, getF32, i8, i16, nearestInt, put16, putF32, u16 } from "./quant-utils.js";

/** Elements per K-quant super-block (ggml's QK_K). */
export const QK_K = 256;
const GROUP_MAX_EPS = 1e-15;

/** Result slot of makeQkx2Quants: the (positive) offset subtracted from the codes. */
interface MinOut {
  min: number;
}

/**
 * ggml's `make_qkx2_quants`: codes 0..nmax with a scale and a min fitted by weighted least
 * squares over a grid of candidate scales. Writes codes to L[lo..lo+n).
 */
function makeQkx2Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  weights: Float32Array,
  L: Uint8Array,
  lo: number,
  laux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
  useMad: boolean,
  out: MinOut,
): number {
  let min = x[xo];
  let max = x[xo];
  let sumW = weights[0];
  let sumX = f(sumW * x[xo]);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i];
    if (v < min) min = v;
    if (v > max) max = v;
    const w = weights[i];
    sumW = f(sumW + w);
    sumX = f(sumX + f(w * v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    out.min = -min;
    return 0;
  }
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = nearestInt(f(iscale * f(x[xo + i] - min)));
    L[lo + i] = Math.max(0, Math.min(nmax, l));
    let diff = f(f(f(scale * L[lo + i]) + min) - x[xo + i]);
    diff = useMad ? Math.abs(diff) : f(diff * diff);
    bestError = f(bestError + f(weights[i] * diff));
  }
  if (nstep < 1) {
    out.min = -min;
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = f(f(f(rmin + f(rdelta * is)) + nmax) / f(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i];
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(v - min)))));
      laux[i] = l;
      const w = weights[i];
      const wl = f(w * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * v));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (D > 0) {
      let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
      let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = f(f(f(thisScale * laux[i]) + thisMin) - x[xo + i]);
        diff = useMad ? Math.abs(diff) : f(diff * diff);
        curError = f(curError + f(weights[i] * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = laux[i];
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  out.min = -min;
  return scale;
}

/** ggml's `make_qx_quants` with rmse_type 1 and no importance weights (Q6_K): signed codes + nmax. */
function makeQxQuants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  L: Int8Array,
  lo: number,
): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = f(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i];
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * v))));
    L[lo + i] = l + nmax;
    const w = f(v * v);
    sumlx = f(sumlx + f(f(w * v) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  let scale = suml2 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(f(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i];
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * v))));
      const w = f(v * v);
      sumlx = f(sumlx + f(f(w * v) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(f(iscale * x[xo + i]));
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/** ggml's `make_q3_quants` with do_rmse (Q3_K): codes in [0, 2·nmax). */
function makeQ3Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  L: Int8Array,
  lo: number,
): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const iscale = f(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i];
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * v))));
    L[lo + i] = l;
    const w = f(v * v);
    sumlx = f(sumlx + f(f(w * v) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i];
      const w = f(v * v);
      const li = L[lo + i];
      let slx = f(sumlx - f(f(w * v) * li));
      if (slx > 0) {
        let sl2 = f(suml2 - f(f(w * li) * li));
        let nl = nearestInt(f(f(v * sl2) / slx));
        nl = Math.max(-nmax, Math.min(nmax - 1, nl));
        if (nl !== li) {
          slx = f(slx + f(f(w * v) * nl));
          sl2 = f(sl2 + f(f(w * nl) * nl));
          if (sl2 > 0 && f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
            L[lo + i] = nl;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] += nmax;
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}

/** 6-bit scale and min of sub-block j from the 12 packed bytes at `o` (ggml's `get_scale_min_k4`). */
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [(q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4), (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4)];
}

/** Signed 6-bit scale j of a Q3_K block (scales at byte `o`). */
function q3Scale(s: Uint8Array, o: number, j: number): number {
  const lo = j < 8 ? s[o + j] & 0xf : s[o + j - 8] >> 4;
  return (lo | (((s[o + 8 + (j % 4)] >> (2 * Math.floor(j / 4))) & 3) << 4)) - 32;
}

/** Packs 2-bit codes L[0..256) as ggml's Q2_K/Q3_K `qs` (element e in byte 32·(e>>7) + (e&31), bits 2·((e>>5)&3)). */
function pack2bit(L: ArrayLike<number>, dst: Uint8Array, o: number): void {
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      dst[o + j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
    }
  }
}

/** Writes the 6-bit scales/mins of Q4_K/Q5_K (12 bytes at `o`). */
function packScalesK4(ls: Uint8Array, lm: Uint8Array, dst: Uint8Array, o: number): void {
  for (let j = 0; j < 12; j++) dst[o + j] = 0;
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      dst[o + j] = ls[j];
      dst[o + j + 4] = lm[j];
    } else {
      dst[o + j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
      dst[o + j - 4] |= (ls[j] >> 4) << 6;
      dst[o + j] |= (lm[j] >> 4) << 6;
    }
  }
}

// Scratch shared by the quantizers (single-threaded JS: never reentrant).
const sL = new Uint8Array(QK_K);
const sLi = new Int8Array(QK_K);
const sLaux = new Uint8Array(32);
const sW = new Float32Array(32);
const sScales = new Float32Array(16);
const sMins = new Float32Array(16);
const sLs = new Uint8Array(8);
const sLm = new Uint8Array(8);
const minOut: MinOut = { min: 0 };

/** Q4_K / Q5_K reference quantizer (they differ in nmax, the search grid and how codes are stored). */
function quantizeQ45K(
  src: Float32Array,
  x: number,
  nmax: number,
  rmin: number,
  nstep: number,
): { d: number; dmin: number } {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f(src[x + 32 * j + l] * src[x + 32 * j + l]));
    const avX = f(Math.sqrt(f(sumX2 / 32)));
    for (let l = 0; l < 32; l++) sW[l] = f(avX + Math.abs(src[x + 32 * j + l]));
    sScales[j] = makeQkx2Quants(
      32,
      nmax,
      src,
      x + 32 * j,
      sW,
      sL,
      32 * j,
      sLaux,
      rmin,
      f(0.1),
      nstep,
      false,
      minOut,
    );
    sMins[j] = minOut.min;
    if (sScales[j] > maxScale) maxScale = sScales[j];
    if (sMins[j] > maxMin) maxMin = sMins[j];
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  for (let j = 0; j < 8; j++) {
    sLs[j] = Math.min(63, nearestInt(f(invScale * sScales[j])) & 0xff);
    sLm[j] = Math.min(63, nearestInt(f(invMin * sMins[j])) & 0xff);
  }
  return { d: f32ToF16(f(maxScale / 63)), dmin: f32ToF16(f(maxMin / 63)) };
}

/** Requantizes each 32-sub-block with the stored (rounded) scale and min, as ggml does. */
function requantizeK4(
  src: Float32Array,
  x: number,
  scales: Uint8Array,
  so: number,
  d: number,
  dmin: number,
  nmax: number,
): void {
  const df = f16ToF32(d);
  const mf = f16ToF32(dmin);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(j, scales, so);
    const dd = f(df * sc);
    if (!dd) continue;
    const dm = f(mf * m);
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(f(f(src[x + 32 * j + ii] + dm) / dd));
      sL[32 * j + ii] = Math.max(0, Math.min(nmax, l));
    }
  }
}

// Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
// Element e: byte 16 + 32·(e>>6) + (e&31), high nibble when (e>>5)&1; sub-block e>>5.
export const q4_KTraits: FormatTraits = {
  type: GGMLType.Q4_K,
  blockSize: QK_K,
  typeSize: 144,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const o = so + b * 144;
      const dd = f16ToF32(u16(src, o));
      const dmin = f16ToF32(u16(src, o + 2));
      for (let j = 0; j < 8; j++) {
        const [sc, m] = scaleMinK4(j, src, o + 4);
        const d1 = f(dd * sc);
        const m1 = f(dmin * m);
        const q = o + 16 + 32 * (j >> 1);
        const shift = 4 * (j & 1);
        for (let l = 0; l < 32; l++)
          dst[d + b * QK_K + 32 * j + l] = f(f(d1 * ((src[q + l] >> shift) & 0xf)) - m1);
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const x = so + b * QK_K;
      const o = d + b * 144;
      const { d: dh, dmin } = quantizeQ45K(src, x, 15, -1, 20);
      packScalesK4(sLs, sLm, dst, o + 4);
      put16(dst, o, dh);
      put16(dst, o + 2, dmin);
      requantizeK4(src, x, dst, o + 4, dh, dmin, 15);
      for (let j = 0; j < QK_K; j += 64) {
        for (let l = 0; l < 32; l++) dst[o + 16 + j / 2 + l] = sL[j + l] | (sL[j + l + 32] << 4);
      }
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / QK_K; b++) {
      const o = wo + b * 144;
      const ox = xo + b * 292;
      let sum = 0;
      let summ = 0;
      for (let j = 0; j < 8; j++) {
        const [sc, m] = scaleMinK4(j, w, o + 4);
        const q = o + 16 + 32 * (j >> 1);
        const shift = 4 * (j & 1);
        let dot = 0;
        for (let l = 0; l < 32; l++) dot += ((w[q + l] >> shift) & 0xf) * i8(x[ox + 4 + 32 * j + l]);
        sum += sc * dot;
        summ += m * (i16(x, ox + 260 + 4 * j) + i16(x, ox + 262 + 4 * j));
      }
      const yd = getF32(x, ox);
      s += f16ToF32(u16(w, o)) * yd * sum - f16ToF32(u16(w, o + 2)) * yd * summ;
    }
    return s;
  },
};

// Q5_K: as Q4_K plus qh[32] (bit e>>5 of byte e&31 is the 5th bit of element e) before the nibbles.
export const q5_KTraits: FormatTraits = {
  type: GGMLType.Q5_K,
  blockSize: QK_K,
  typeSize: 176,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const o = so + b * 176;
      const dd = f16ToF32(u16(src, o));
      const dmin = f16ToF32(u16(src, o + 2));
      for (let j = 0; j < 8; j++) {
        const [sc, m] = scaleMinK4(j, src, o + 4);
        const d1 = f(dd * sc);
        const m1 = f(dmin * m);
        const q = o + 48 + 32 * (j >> 1);
        const shift = 4 * (j & 1);
        for (let l = 0; l < 32; l++) {
          const code = ((src[q + l] >> shift) & 0xf) + ((src[o + 16 + l] >> j) & 1 ? 16 : 0);
          dst[d + b * QK_K + 32 * j + l] = f(f(d1 * code) - m1);
        }
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const x = so + b * QK_K;
      const o = d + b * 176;
      const { d: dh, dmin } = quantizeQ45K(src, x, 31, -0.5, 15);
      packScalesK4(sLs, sLm, dst, o + 4);
      put16(dst, o, dh);
      put16(dst, o + 2, dmin);
      requantizeK4(src, x, dst, o + 4, dh, dmin, 31);
      for (let j = 0; j < 32; j++) dst[o + 16 + j] = 0;
      let m1 = 1;
      let m2 = 2;
      for (let nn = 0; nn < QK_K; nn += 64) {
        for (let j = 0; j < 32; j++) {
          let l1 = sL[nn + j];
          if (l1 > 15) {
            l1 -= 16;
            dst[o + 16 + j] |= m1;
          }
          let l2 = sL[nn + j + 32];
          if (l2 > 15) {
            l2 -= 16;
            dst[o + 16 + j] |= m2;
          }
          dst[o + 48 + nn / 2 + j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
      }
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / QK_K; b++) {
      const o = wo + b * 176;
      const ox = xo + b * 292;
      let sum = 0;
      let summ = 0;
      for (let j = 0; j < 8; j++) {
        const [sc, m] = scaleMinK4(j, w, o + 4);
        const q = o + 48 + 32 * (j >> 1);
        const shift = 4 * (j & 1);
        let dot = 0;
        for (let l = 0; l < 32; l++) {
          const code = ((w[q + l] >> shift) & 0xf) + ((w[o + 16 + l] >> j) & 1 ? 16 : 0);
          dot += code * i8(x[ox + 4 + 32 * j + l]);
        }
        sum += sc * dot;
        summ += m * (i16(x, ox + 260 + 4 * j) + i16(x, ox + 262 + 4 * j));
      }
      const yd = getF32(x, ox);
      s += f16ToF32(u16(w, o)) * yd * sum - f16ToF32(u16(w, o + 2)) * yd * summ;
    }
    return s;
  },
};

/** Signed 6-bit code of element e of a Q6_K block at `o` (ql at o, qh at o+128), in [-32, 31]. */
function q6Code(b: Uint8Array, o: number, e: number): number {
  const c = e >> 7;
  const k = (e >> 5) & 3;
  const l = e & 31;
  const lo = (b[o + 64 * c + l + 32 * (k & 1)] >> (4 * (k >> 1))) & 0xf;
  const hi = (b[o + 128 + 32 * c + l] >> (2 * k)) & 3;
  return (lo | (hi << 4)) - 32;
}

// Q6_K: ql[128] low nibbles, qh[64] 2-bit high parts, 16 int8 scales, f16 d; value = d·sc·q.
export const q6_KTraits: FormatTraits = {
  type: GGMLType.Q6_K,
  blockSize: QK_K,
  typeSize: 210,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const o = so + b * 210;
      const dd = f16ToF32(u16(src, o + 208));
      for (let e = 0; e < QK_K; e++) {
        dst[d + b * QK_K + e] = f(f(dd * i8(src[o + 192 + (e >> 4)])) * q6Code(src, o, e));
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const x = so + b * QK_K;
      const o = d + b * 210;
      let maxScale = 0;
      let maxAbsScale = 0;
      for (let ib = 0; ib < 16; ib++) {
        const scale = makeQxQuants(16, 32, src, x + 16 * ib, sLi, 16 * ib);
        sScales[ib] = scale;
        if (Math.abs(scale) > maxAbsScale) {
          maxAbsScale = Math.abs(scale);
          maxScale = scale;
        }
      }
      if (maxAbsScale < GROUP_MAX_EPS) {
        dst.fill(0, o, o + 210);
        continue;
      }
      const iscale = f(-128 / maxScale);
      const dh = f32ToF16(f(1 / iscale));
      put16(dst, o + 208, dh);
      for (let ib = 0; ib < 16; ib++)
        dst[o + 192 + ib] = Math.min(127, nearestInt(f(iscale * sScales[ib]))) & 0xff;
      for (let j = 0; j < 16; j++) {
        const dd = f(f16ToF32(dh) * i8(dst[o + 192 + j]));
        if (!dd) continue;
        for (let ii = 0; ii < 16; ii++) {
          const l = nearestInt(f(src[x + 16 * j + ii] / dd));
          sLi[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
        }
      }
      for (let j = 0; j < QK_K; j += 128) {
        const ql = o + j / 2;
        const qh = o + 128 + j / 4;
        for (let l = 0; l < 32; l++) {
          const L = (k: number) => sLi[j + l + k];
          dst[ql + l] = (L(0) & 0xf) | ((L(64) & 0xf) << 4);
          dst[ql + l + 32] = (L(32) & 0xf) | ((L(96) & 0xf) << 4);
          dst[qh + l] = (L(0) >> 4) | ((L(32) >> 4) << 2) | ((L(64) >> 4) << 4) | ((L(96) >> 4) << 6);
        }
      }
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / QK_K; b++) {
      const o = wo + b * 210;
      const ox = xo + b * 292;
      let sum = 0;
      for (let j = 0; j < 16; j++) {
        let dot = 0;
        for (let l = 0; l < 16; l++) dot += q6Code(w, o, 16 * j + l) * i8(x[ox + 4 + 16 * j + l]);
        sum += i8(w[o + 192 + j]) * dot;
      }
      s += f16ToF32(u16(w, o + 208)) * getF32(x, ox) * sum;
    }
    return s;
  },
};

// Q2_K: 16 bytes of 4-bit scale | 4-bit min, 64 bytes of 2-bit codes, f16 d, f16 dmin.
export const q2_KTraits: FormatTraits = {
  type: GGMLType.Q2_K,
  blockSize: QK_K,
  typeSize: 84,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const o = so + b * 84;
      const dd = f16ToF32(u16(src, o + 80));
      const dmin = f16ToF32(u16(src, o + 82));
      for (let e = 0; e < QK_K; e++) {
        const sc = src[o + (e >> 4)];
        const q = (src[o + 16 + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
        dst[d + b * QK_K + e] = f(f(f(dd * (sc & 0xf)) * q) - f(dmin * (sc >> 4)));
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    const q4scale = 15;
    for (let b = 0; b < n / QK_K; b++) {
      const x = so + b * QK_K;
      const o = d + b * 84;
      let maxScale = 0;
      let maxMin = 0;
      for (let j = 0; j < 16; j++) {
        for (let l = 0; l < 16; l++) sW[l] = Math.abs(src[x + 16 * j + l]);
        sScales[j] = makeQkx2Quants(
          16,
          3,
          src,
          x + 16 * j,
          sW,
          sL,
          16 * j,
          sLaux,
          -0.5,
          f(0.1),
          15,
          true,
          minOut,
        );
        sMins[j] = minOut.min;
        if (sScales[j] > maxScale) maxScale = sScales[j];
        if (sMins[j] > maxMin) maxMin = sMins[j];
      }
      if (maxScale > 0) {
        const iscale = f(q4scale / maxScale);
        for (let j = 0; j < 16; j++) dst[o + j] = nearestInt(f(iscale * sScales[j])) & 0xff;
        put16(dst, o + 80, f32ToF16(f(maxScale / q4scale)));
      } else {
        for (let j = 0; j < 16; j++) dst[o + j] = 0;
        put16(dst, o + 80, f32ToF16(0));
      }
      if (maxMin > 0) {
        const iscale = f(q4scale / maxMin);
        for (let j = 0; j < 16; j++) dst[o + j] |= (nearestInt(f(iscale * sMins[j])) << 4) & 0xff;
        put16(dst, o + 82, f32ToF16(f(maxMin / q4scale)));
      } else {
        put16(dst, o + 82, f32ToF16(0));
      }
      const df = f16ToF32(u16(dst, o + 80));
      const mf = f16ToF32(u16(dst, o + 82));
      for (let j = 0; j < 16; j++) {
        const dd = f(df * (dst[o + j] & 0xf));
        if (!dd) continue;
        const dm = f(mf * (dst[o + j] >> 4));
        for (let ii = 0; ii < 16; ii++) {
          const l = nearestInt(f(f(src[x + 16 * j + ii] + dm) / dd));
          sL[16 * j + ii] = Math.max(0, Math.min(3, l));
        }
      }
      pack2bit(sL, dst, o + 16);
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / QK_K; b++) {
      const o = wo + b * 84;
      const ox = xo + b * 292;
      let sum = 0;
      let summ = 0;
      for (let j = 0; j < 16; j++) {
        const sc = w[o + j];
        let dot = 0;
        for (let l = 0; l < 16; l++) {
          const e = 16 * j + l;
          const q = (w[o + 16 + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
          dot += q * i8(x[ox + 4 + e]);
        }
        sum += (sc & 0xf) * dot;
        summ += (sc >> 4) * i16(x, ox + 260 + 2 * j);
      }
      const yd = getF32(x, ox);
      s += f16ToF32(u16(w, o + 80)) * yd * sum - f16ToF32(u16(w, o + 82)) * yd * summ;
    }
    return s;
  },
};

/** Signed 3-bit code of element e of a Q3_K block at `o` (hmask at o, qs at o+32), in [-4, 3]. */
function q3Code(b: Uint8Array, o: number, e: number): number {
  const q = (b[o + 32 + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
  return q - ((b[o + (e & 31)] >> (e >> 5)) & 1 ? 0 : 4);
}

// Q3_K: hmask[32] (high bits), 64 bytes of 2-bit low parts, 12 bytes of signed 6-bit scales, f16 d.
export const q3_KTraits: FormatTraits = {
  type: GGMLType.Q3_K,
  blockSize: QK_K,
  typeSize: 110,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const o = so + b * 110;
      const dAll = f16ToF32(u16(src, o + 108));
      for (let e = 0; e < QK_K; e++) {
        dst[d + b * QK_K + e] = f(f(dAll * q3Scale(src, o + 96, e >> 4)) * q3Code(src, o, e));
      }
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const x = so + b * QK_K;
      const o = d + b * 110;
      let maxScale = 0;
      let amax = 0;
      for (let j = 0; j < 16; j++) {
        sScales[j] = makeQ3Quants(16, 4, src, x + 16 * j, sLi, 16 * j);
        if (Math.abs(sScales[j]) > amax) {
          amax = Math.abs(sScales[j]);
          maxScale = sScales[j];
        }
      }
      const sc = o + 96;
      dst.fill(0, sc, sc + 12);
      if (maxScale) {
        const iscale = f(-32 / maxScale);
        for (let j = 0; j < 16; j++) {
          let l = i8(nearestInt(f(iscale * sScales[j])));
          l = Math.max(-32, Math.min(31, l)) + 32;
          if (j < 8) dst[sc + j] = l & 0xf;
          else dst[sc + j - 8] |= (l & 0xf) << 4;
          l >>= 4;
          dst[sc + 8 + (j % 4)] |= l << (2 * Math.floor(j / 4));
        }
        put16(dst, o + 108, f32ToF16(f(1 / iscale)));
      } else {
        put16(dst, o + 108, f32ToF16(0));
      }
      const dAll = f16ToF32(u16(dst, o + 108));
      for (let j = 0; j < 16; j++) {
        const dd = f(dAll * q3Scale(dst, sc, j));
        if (!dd) continue;
        for (let ii = 0; ii < 16; ii++) {
          const l = nearestInt(f(src[x + 16 * j + ii] / dd));
          sLi[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
        }
      }
      dst.fill(0, o, o + 32);
      let m = 0;
      let hm = 1;
      for (let j = 0; j < QK_K; j++) {
        if (sLi[j] > 3) {
          dst[o + m] |= hm;
          sLi[j] -= 4;
        }
        if (++m === 32) {
          m = 0;
          hm <<= 1;
        }
      }
      pack2bit(sLi, dst, o + 32);
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / QK_K; b++) {
      const o = wo + b * 110;
      const ox = xo + b * 292;
      let sum = 0;
      for (let j = 0; j < 16; j++) {
        let dot = 0;
        for (let l = 0; l < 16; l++) dot += q3Code(w, o, 16 * j + l) * i8(x[ox + 4 + 16 * j + l]);
        sum += q3Scale(w, o + 96, j) * dot;
      }
      s += f16ToF32(u16(w, o + 108)) * getF32(x, ox) * sum;
    }
    return s;
  },
};

// Q8_K: f32 d, 256 int8, 16 int16 sums of 16 quants each; the activation format of the K-quants
// and the ternary formats (only ever made from activations, never stored in files).
export const q8_KTraits: FormatTraits = {
  type: GGMLType.Q8_K,
  blockSize: QK_K,
  typeSize: 292,
  vecDotType: GGMLType.Q8_K,
  dequantizeRow(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const o = so + b * 292;
      const dd = getF32(src, o);
      for (let j = 0; j < QK_K; j++) dst[d + b * QK_K + j] = f(dd * i8(src[o + 4 + j]));
    }
  },
  quantizeRowRef(src, so, dst, d, n) {
    for (let b = 0; b < n / QK_K; b++) {
      const x = so + b * QK_K;
      const o = d + b * 292;
      let max = 0;
      let amax = 0;
      for (let j = 0; j < QK_K; j++) {
        const ax = Math.abs(src[x + j]);
        if (ax > amax) {
          amax = ax;
          max = src[x + j];
        }
      }
      if (!amax) {
        // ggml leaves bsums untouched here; zero them so the output never depends on old bytes.
        dst.fill(0, o, o + 292);
        continue;
      }
      const iscale = f(-127 / max);
      for (let j = 0; j < QK_K; j++)
        dst[o + 4 + j] = Math.min(127, nearestInt(f(iscale * src[x + j]))) & 0xff;
      for (let j = 0; j < 16; j++) {
        let sum = 0;
        for (let ii = 0; ii < 16; ii++) sum += i8(dst[o + 4 + 16 * j + ii]);
        put16(dst, o + 260 + 2 * j, sum & 0xffff);
      }
      putF32(dst, o, f(1 / iscale));
    }
  },
  vecDotRef(n, w, wo, x, xo) {
    let s = 0;
    for (let b = 0; b < n / QK_K; b++) {
      const o = wo + b * 292;
      const ox = xo + b * 292;
      let sumi = 0;
      for (let j = 0; j < QK_K; j++) sumi += i8(w[o + 4 + j]) * i8(x[ox + 4 + j]);
      s += getF32(w, o) * getF32(x, ox) * sumi;
    }
    return s;
  },
};
