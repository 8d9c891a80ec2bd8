import type {
  AttentionParams,
  Backend,
  KVCacheArray,
  PagedAttentionParams,
  PagedKVCacheArray,
  RopeParams,
  YarnParams,
} from "./backend.js";
import { typeName } from "./dtypes.js";
import { RyzansteinError } from "./errors.js";
import { FORMAT_TRAITS, isComputeFormat } from "./formats.js";
import { f16ToF32, f32ToF16 } from "./half.js";
import { dequantizeKvRowQ8_0, kvQ8_0RowBytes, quantizeKvRowsQ8_0 } from "./kv-q8_0.js";
import type { Tensor } from "./tensor.js";

/**
 * The oracle: every operation in plain TypeScript, accumulating in float64, quantizing activations
 * exactly as ggml does. Slow on purpose-free code paths; native kernels are tested against it.
 */
export class ReferenceBackend implements Backend {
  readonly name = "reference";

  matmul(y: Float32Array, w: Tensor, x: Float32Array, n: number): void {
    if (!isComputeFormat(w.type)) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `matmul: ${typeName(w.type)} weights are not supported`,
      );
    }
    const { rows, cols, rowBytes } = w;
    const traits = FORMAT_TRAITS[w.type];
    const act = FORMAT_TRAITS[traits.vecDotType];
    const xq = new Uint8Array((cols / act.blockSize) * act.typeSize);
    const quantize = (act.quantizeActivationsRef ?? act.quantizeRowRef).bind(act);
    for (let t = 0; t < n; t++) {
      quantize(x, t * cols, xq, 0, cols);
      for (let r = 0; r < rows; r++) y[t * rows + r] = traits.vecDotRef(cols, w.data, r * rowBytes, xq, 0);
    }
  }

  getRows(y: Float32Array, table: Tensor, ids: Int32Array): void {
    if (!isComputeFormat(table.type)) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `getRows: ${typeName(table.type)} is not supported`,
      );
    }
    const traits = FORMAT_TRAITS[table.type];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id < 0 || id >= table.rows) throw new RyzansteinError("OUT_OF_BOUNDS", `row id ${id} out of range`);
      traits.dequantizeRow(table.data, id * table.rowBytes, y, i * table.cols, table.cols);
    }
  }

  rmsNorm(y: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void {
    for (let t = 0; t < n; t++) {
      const o = t * dim;
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
      const scale = 1 / Math.sqrt(ss / dim + eps);
      for (let i = 0; i < dim; i++) y[o + i] = x[o + i] * scale * weight[i];
    }
  }

  rope(x: Float32Array, n: number, positions: Int32Array, p: RopeParams): void {
    // ggml's float arithmetic, step for step: the angle of pair i is position · base^(-2i/nDims),
    // reached by multiplying by base^(-2/nDims) pair after pair in float. Matching it matters more
    // than extra precision: a 1e-6 difference in an angle flips roundings of Q8_0 activations
    // downstream, which shows in the logits (docs/testing.md).
    const fr = Math.fround;
    const rowLen = p.nHeads * p.headDim;
    const half = p.nDims / 2;
    const corr = p.yarn ? yarnCorrDims(p.nDims, p.yarn, p.freqBase) : [0, 0];
    const thetaScale = fr(p.freqBase ** fr(-2 / p.nDims));
    const freqScale = fr(p.freqScale);
    const cos = new Float32Array(half);
    const sin = new Float32Array(half);
    for (let t = 0; t < n; t++) {
      let theta = fr(positions[t]);
      for (let i = 0; i < half; i++) {
        const extrap = p.freqFactors ? fr(theta / p.freqFactors[i]) : theta;
        let angle = fr(freqScale * extrap);
        let mscale = 1;
        if (p.yarn) {
          mscale = fr(p.yarn.attnFactor);
          if (p.yarn.extFactor !== 0) {
            const y = fr(fr(i - corr[0]) / Math.max(0.001, fr(corr[1] - corr[0])));
            const ramp = fr(fr(1 - Math.min(1, Math.max(0, y))) * fr(p.yarn.extFactor));
            angle = fr(fr(angle * fr(1 - ramp)) + fr(extrap * ramp));
            mscale = fr(mscale * fr(1 + fr(0.1 * fr(Math.log(fr(1 / freqScale))))));
          }
        }
        cos[i] = fr(fr(Math.cos(angle)) * mscale);
        sin[i] = fr(fr(Math.sin(angle)) * mscale);
        theta = fr(theta * thetaScale);
      }
      for (let h = 0; h < p.nHeads; h++) {
        const o = t * rowLen + h * p.headDim;
        for (let i = 0; i < half; i++) {
          const a = p.neox ? o + i : o + 2 * i;
          const b = p.neox ? o + i + half : o + 2 * i + 1;
          const x0 = x[a];
          const x1 = x[b];
          // One FMA each, as ggml's compiler contracts rotate_pairs (the last bit decides F16
          // roundings of Q and K in the attention).
          x[a] = fmaF32(x0, cos[i], -fr(x1 * sin[i]));
          x[b] = fmaF32(x0, sin[i], fr(x1 * cos[i]));
        }
      }
    }
  }

  softmax(x: Float32Array, n: number, dim: number): void {
    for (let t = 0; t < n; t++) softmaxRow(x, t * dim, dim);
  }

  argmax(ids: Int32Array, x: Float32Array, n: number, dim: number): void {
    for (let t = 0; t < n; t++) ids[t] = argmaxRow(x, t * dim, dim);
  }

  swiglu(y: Float32Array, gate: Float32Array, up: Float32Array, len: number): void {
    for (let i = 0; i < len; i++) {
      const g = gate[i];
      y[i] = (g / (1 + Math.exp(-g))) * up[i];
    }
  }

  geglu(y: Float32Array, gate: Float32Array, up: Float32Array, len: number): void {
    for (let i = 0; i < len; i++) y[i] = geluTanh(gate[i]) * up[i];
  }

  add(y: Float32Array, a: Float32Array, b: Float32Array, len: number): void {
    for (let i = 0; i < len; i++) y[i] = a[i] + b[i];
  }

  toF16(dst: Uint16Array, dstOffset: number, src: Float32Array, len: number): void {
    for (let i = 0; i < len; i++) dst[dstOffset + i] = f32ToF16(src[i]);
  }

  quantizeKvQ8_0(dst: Uint8Array, dstRow: number, src: Float32Array, rows: number, rowSize: number): void {
    quantizeKvRowsQ8_0(dst, dstRow, src, rows, rowSize);
  }

  attention(
    out: Float32Array,
    q: Float32Array,
    k: KVCacheArray,
    v: KVCacheArray,
    positions: Int32Array,
    n: number,
    p: AttentionParams,
  ): void {
    if (p.f16Accumulate && k instanceof Uint16Array && v instanceof Uint16Array) {
      attentionF16Accumulate(out, q, k, v, positions, n, p);
      return;
    }
    if (k instanceof Uint16Array || v instanceof Uint16Array) {
      // F16 cache: decode the rows in use once, then the same exact float64 computation.
      let len = 0;
      for (let t = 0; t < n; t++) len = Math.max(len, positions[t] + 1);
      const rows = len * p.nKvHeads * p.headDim;
      const decode = (a: KVCacheArray) =>
        a instanceof Uint16Array ? Float32Array.from(a.subarray(0, rows), f16ToF32) : a;
      this.attention(out, q, decode(k), decode(v), positions, n, p);
      return;
    }
    const qRow = p.nHeads * p.headDim;
    const kvRow = p.nKvHeads * p.headDim;
    const group = p.nHeads / p.nKvHeads;
    for (let t = 0; t < n; t++) {
      const len = positions[t] + 1;
      const scores = new Float64Array(len);
      for (let h = 0; h < p.nHeads; h++) {
        const qo = t * qRow + h * p.headDim;
        const kvh = Math.floor(h / group) * p.headDim;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < p.headDim; d++) s += q[qo + d] * k[j * kvRow + kvh + d];
          scores[j] = p.softcap ? p.softcap * Math.tanh((s * p.scale) / p.softcap) : s * p.scale;
          if (scores[j] > max) max = scores[j];
        }
        let sum = 0;
        for (let j = 0; j < len; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (let d = 0; d < p.headDim; d++) {
          let acc = 0;
          for (let j = 0; j < len; j++) acc += scores[j] * v[j * kvRow + kvh + d];
          out[qo + d] = acc / sum;
        }
      }
    }
  }

  pagedAttention(
    out: Float32Array,
    q: Float32Array,
    k: PagedKVCacheArray,
    v: PagedKVCacheArray,
    positions: Int32Array,
    seqOfRow: Int32Array,
    blockTables: Int32Array,
    n: number,
    p: PagedAttentionParams,
  ): void {
    const qRow = p.nHeads * p.headDim;
    const kvRow = p.nKvHeads * p.headDim;
    const group = p.nHeads / p.nKvHeads;
    if (k instanceof Uint8Array || v instanceof Uint8Array) {
      if (!(k instanceof Uint8Array && v instanceof Uint8Array))
        throw new RyzansteinError("INVALID_ARGUMENT", "pagedAttention: k and v must both be Q8_0 caches");
      // Q8_0 cache: decode every row to floats, then the same exact computation.
      const rowBytes = kvQ8_0RowBytes(kvRow);
      const rowsIn = Math.floor(Math.min(k.length, v.length) / rowBytes);
      const kd = new Float32Array(rowsIn * kvRow);
      const vd = new Float32Array(rowsIn * kvRow);
      for (let r = 0; r < rowsIn; r++) {
        dequantizeKvRowQ8_0(k, r, kvRow, kd, r * kvRow);
        dequantizeKvRowQ8_0(v, r, kvRow, vd, r * kvRow);
      }
      this.pagedAttention(out, q, kd, vd, positions, seqOfRow, blockTables, n, p);
      return;
    }
    const f32 = (a: KVCacheArray, i: number) => (a instanceof Uint16Array ? f16ToF32(a[i]) : a[i]);
    const nRows = Math.floor(Math.min(k.length, v.length) / kvRow);
    for (let t = 0; t < n; t++) {
      const len = positions[t] + 1;
      const table = seqOfRow[t] * p.maxBlocksPerSeq;
      if (len < 1 || Math.ceil(len / p.blockSize) > p.maxBlocksPerSeq || seqOfRow[t] < 0) {
        throw new RyzansteinError("OUT_OF_BOUNDS", `pagedAttention: row ${t} is outside the block table`);
      }
      const rows = new Int32Array(len);
      for (let j = 0; j < len; j++) {
        const block = blockTables[table + Math.floor(j / p.blockSize)];
        rows[j] = block * p.blockSize + (j % p.blockSize);
        if (!(block >= 0) || rows[j] >= nRows)
          throw new RyzansteinError("OUT_OF_BOUNDS", `pagedAttention: block ${block} is outside the cache`);
      }
      const scores = new Float64Array(len);
      for (let h = 0; h < p.nHeads; h++) {
        const qo = t * qRow + h * p.headDim;
        const kvh = Math.floor(h / group) * p.headDim;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < len; j++) {
          let s = 0;
          const ko = rows[j] * kvRow + kvh;
          for (let d = 0; d < p.headDim; d++) s += q[qo + d] * f32(k, ko + d);
          scores[j] = s * p.scale;
          if (scores[j] > max) max = scores[j];
        }
        let sum = 0;
        for (let j = 0; j < len; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (let d = 0; d < p.headDim; d++) {
          let acc = 0;
          for (let j = 0; j < len; j++) acc += scores[j] * f32(v, rows[j] * kvRow + kvh + d);
          out[qo + d] = acc / sum;
        }
      }
    }
  }
}

/** The pair indices where YaRN's ramp starts and ends (llama.cpp's `ggml_rope_yarn_corr_dims`). */
export function yarnCorrDims(nDims: number, y: YarnParams, base: number): [number, number] {
  const dim = (rotations: number) =>
    (nDims * Math.log(y.origContext / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  return [Math.max(0, Math.floor(dim(y.betaFast))), Math.min(nDims - 1, Math.ceil(dim(y.betaSlow)))];
}

/**
 * Attention as ggml's CPU flash attention computes a query row over an F16 cache
 * (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`, AVX2 build): Q rounded to F16, each score
 * an F16·F16 dot product summed in 4×8 float lanes, an online softmax with float `exp`, and the
 * weighted V rows accumulated in an F16 buffer, rounded after every key.
 */
function attentionF16Accumulate(
  out: Float32Array,
  q: Float32Array,
  k: Uint16Array,
  v: Uint16Array,
  positions: Int32Array,
  n: number,
  p: AttentionParams,
): void {
  const fr = Math.fround;
  const h16 = (x: number) => f16ToF32(f32ToF16(x));
  const D = p.headDim;
  const qRow = p.nHeads * D;
  const kvRow = p.nKvHeads * D;
  const group = p.nHeads / p.nKvHeads;
  const softcap = p.softcap ?? 0;
  const scale = fr(softcap ? p.scale / softcap : p.scale);
  const qh = new Float32Array(D);
  const acc = new Float32Array(D);
  const lanes = new Float32Array(32);
  const full = D - (D % 32);
  for (let t = 0; t < n; t++) {
    const len = positions[t] + 1;
    for (let h = 0; h < p.nHeads; h++) {
      const qo = t * qRow + h * D;
      const kvh = Math.floor(h / group) * D;
      for (let d = 0; d < D; d++) qh[d] = h16(q[qo + d]);
      acc.fill(0);
      let sum = 0;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < len; j++) {
        const ko = j * kvRow + kvh;
        lanes.fill(0);
        for (let i = 0; i < full; i += 32)
          for (let l = 0; l < 32; l++) lanes[l] = fmaF32(qh[i + l], f16ToF32(k[ko + i + l]), lanes[l]);
        // GGML_F32x8_REDUCE: acc0 += acc2, acc1 += acc3, acc0 += acc1, halves, then two hadds.
        for (let l = 0; l < 8; l++) {
          lanes[l] = fr(lanes[l] + lanes[16 + l]);
          lanes[8 + l] = fr(lanes[8 + l] + lanes[24 + l]);
        }
        for (let l = 0; l < 8; l++) lanes[l] = fr(lanes[l] + lanes[8 + l]);
        const t0 = fr(lanes[0] + lanes[4]);
        const t1 = fr(lanes[1] + lanes[5]);
        const t2 = fr(lanes[2] + lanes[6]);
        const t3 = fr(lanes[3] + lanes[7]);
        let dot = fr(t0 + t1) + fr(t2 + t3);
        for (let i = full; i < D; i++) dot += qh[i] * f16ToF32(k[ko + i]);
        let s = fr(fr(dot) * scale);
        if (softcap) s = fr(softcap * fr(Math.tanh(s)));
        let ms = 1;
        let vs = 1;
        if (s > max) {
          ms = fr(Math.exp(fr(max - s)));
          max = s;
          for (let d = 0; d < D; d++) acc[d] = h16(fr(acc[d] * ms));
        } else {
          vs = fr(Math.exp(fr(s - max)));
        }
        const vo = j * kvRow + kvh;
        for (let d = 0; d < full; d++) acc[d] = h16(fmaF32(f16ToF32(v[vo + d]), vs, acc[d]));
        for (let d = full; d < D; d++) acc[d] = h16(fr(acc[d] + fr(f16ToF32(v[vo + d]) * vs)));
        sum = fr(fr(sum * ms) + vs);
      }
      const inv = sum === 0 ? 0 : fr(1 / sum);
      for (let d = 0; d < D; d++) out[qo + d] = fr(acc[d] * inv);
    }
  }
}

const fmaBits = new Float32Array(1);
const fmaUint = new Uint32Array(fmaBits.buffer);

/**
 * Float `fma(a, b, c)` (C's `fmaf`) with one rounding: the product of two floats is exact in a double; the sum's
 * double rounding is undone where it matters, when the double lands exactly halfway between two
 * floats (its rounding error, from TwoSum, then says which way the exact sum lies).
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = Math.fround(s);
  if (r === s || !Number.isFinite(r)) return r;
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  if (err === 0) return r;
  // The float on the other side of s from r.
  fmaBits[0] = r;
  const away = r > s === r > 0 ? -1 : 1; // step toward s in magnitude terms
  fmaUint[0] += r === 0 ? 1 : away;
  let other = fmaBits[0];
  if (r === 0) other = s > 0 ? Math.abs(other) : -Math.abs(other);
  if (s - r !== (other - r) / 2) return r; // not a midpoint: the one rounding of fround is right
  // Exactly halfway in double: the exact sum lies on the side of err.
  return err > 0 === other > r ? other : r;
}

/** GELU with the tanh approximation (PyTorch's `gelu(approximate="tanh")`, ggml's `gelu`). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/** Index (from `o`) of the largest of `x[o..o+dim)`: first of equal maxima, NaN skipped, 0 if none > -Infinity. */
export function argmaxRow(x: ArrayLike<number>, o: number, dim: number): number {
  let best = 0;
  let value = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < dim; i++) {
    const v = x[o + i];
    if (v > value) {
      value = v;
      best = i;
    }
  }
  return best;
}

function softmaxRow(x: Float32Array, o: number, dim: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < dim; i++) if (x[o + i] > max) max = x[o + i];
  let sum = 0;
  for (let i = 0; i < dim; i++) {
    const e = Math.exp(x[o + i] - max);
    x[o + i] = e;
    sum += e;
  }
  for (let i = 0; i < dim; i++) x[o + i] /= sum;
}
