/**
 * The operations a training step needs, forward and backward, behind one interface with two
 * implementations: {@link referenceOps} (plain TypeScript over Float64Array, the oracle for
 * gradient checks) and {@link nativeOps} (Float32Array; the GEMMs and attention run in the native
 * training kernels, the element-wise ops in the same TypeScript as the reference).
 *
 * Layouts: activations are row-major `[n, features]`; a linear weight is `[out, in]` (ggml layout,
 * `y = x·Wᵀ`). Sequences are packed: `n = batch * seq`, position of row r is `r % seq`.
 */
import type { Tensor } from "@ryzanstein/core-tensor";
import {
  type FrozenWeight,
  type Isa,
  NativeTrainKernels,
  type TrainAttentionShape,
} from "@ryzanstein/kernels-native";

/** A float buffer: Float64Array in the reference, Float32Array natively. */
export type FloatArray = Float32Array | Float64Array;

/** Attention call shape (re-exported from kernels-native). */
export type AttentionShape = TrainAttentionShape;

/**
 * A frozen base matrix `[out, in]` kept in its storage format: `tensor` in the GGUF layout (read by
 * the float64 reference and by row lookups) and `native`, what the native kernels read (the same
 * bytes, or a repacked copy).
 */
export interface FrozenMatrix {
  /** The tensor in the file layout. */
  tensor: Tensor;
  /** The bytes the native kernels read. */
  native: FrozenWeight;
}

/** Forward and backward kernels of a Llama block, over buffers of type `A`. */
export interface TrainOps<A extends FloatArray> {
  /** Zero-filled buffer of `n` elements. */
  alloc(n: number): A;
  /** `y[n,out] = x[n,in]·w[out,in]ᵀ`. */
  linear(y: A, x: A, w: A, n: number, inDim: number, outDim: number): void;
  /** `dx (+)= dy·w`. */
  linearBackwardInput(
    dx: A,
    dy: A,
    w: A,
    n: number,
    inDim: number,
    outDim: number,
    accumulate: boolean,
  ): void;
  /** `y[n,out] = x[n,in]·Wᵀ` through a frozen weight (natively: the inference matmul). */
  linearFrozen(y: A, x: A, w: FrozenMatrix, n: number): void;
  /** `dx (+)= dy·W` through a frozen weight (no weight gradient). */
  linearFrozenBackwardInput(dx: A, dy: A, w: FrozenMatrix, n: number, accumulate: boolean): void;
  /** `y[r] = W[ids[r]]` from a frozen table. */
  embeddingFrozen(y: A, w: FrozenMatrix, ids: Int32Array, n: number): void;
  /** `dw += dyᵀ·x`. */
  linearBackwardWeight(dw: A, dy: A, x: A, n: number, inDim: number, outDim: number): void;
  /** Causal attention; `probs [batch, nHeads, seq, seq]` is kept for the backward. */
  attention(out: A, probs: A, q: A, k: A, v: A, s: AttentionShape): void;
  /** Gradients of q, k, v (overwritten). */
  attentionBackward(dq: A, dk: A, dv: A, q: A, k: A, v: A, probs: A, dout: A, s: AttentionShape): void;
  /** See {@link rmsNorm}. */
  rmsNorm(y: A, x: A, w: A, n: number, dim: number, eps: number): void;
  /** See {@link rmsNormBackward}. */
  rmsNormBackward(dx: A, dw: A, dy: A, x: A, w: A, n: number, dim: number, eps: number): void;
  /** See {@link rope}. */
  rope(x: A, n: number, seq: number, nHeads: number, headDim: number, freqBase: number, sign: number): void;
  /** See {@link swiglu}. */
  swiglu(out: A, gate: A, up: A, len: number): void;
  /** See {@link swigluBackward}. */
  swigluBackward(dgate: A, dup: A, dout: A, gate: A, up: A, len: number): void;
  /** See {@link crossEntropy}. */
  crossEntropy(
    logits: A,
    targets: Int32Array,
    n: number,
    vocab: number,
    dlogits: A | null,
    scale: number,
  ): number;
  /** See {@link embeddingBackward}. */
  embeddingBackward(dtable: A, dy: A, ids: Int32Array, n: number, dim: number): void;
}

// ---- element-wise ops shared by both implementations (generic over the array type) ----

/** `y = x / rms(x) * w` per row. */
export function rmsNorm(
  y: FloatArray,
  x: FloatArray,
  w: FloatArray,
  n: number,
  dim: number,
  eps: number,
): void {
  for (let r = 0; r < n; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[o + i] = x[o + i] * inv * w[i];
  }
}

/** Backward of {@link rmsNorm}: `dx += ∂L/∂x`, `dw += ∂L/∂w`. */
export function rmsNormBackward(
  dx: FloatArray,
  dw: FloatArray,
  dy: FloatArray,
  x: FloatArray,
  w: FloatArray,
  n: number,
  dim: number,
  eps: number,
): void {
  for (let r = 0; r < n; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    let dot = 0; // Σ dy·w·x
    for (let i = 0; i < dim; i++) {
      dot += dy[o + i] * w[i] * x[o + i];
      dw[i] += dy[o + i] * x[o + i] * inv;
    }
    const c = (dot * inv * inv * inv) / dim;
    for (let i = 0; i < dim; i++) dx[o + i] += dy[o + i] * w[i] * inv - x[o + i] * c;
  }
}

/**
 * Rotary embedding, Llama GGUF layout (adjacent pairs), in place; position of row r is `r % seq`.
 * `sign = -1` rotates backwards, which is the backward pass (the rotation is orthogonal).
 */
export function rope(
  x: FloatArray,
  n: number,
  seq: number,
  nHeads: number,
  headDim: number,
  freqBase: number,
  sign = 1,
): void {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = freqBase ** ((-2 * i) / headDim);
  const cos = new Float64Array(seq * half);
  const sin = new Float64Array(seq * half);
  for (let p = 0; p < seq; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * inv[i];
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = sign * Math.sin(a);
    }
  }
  const row = nHeads * headDim;
  for (let r = 0; r < n; r++) {
    const p = r % seq;
    for (let h = 0; h < nHeads; h++) {
      const o = r * row + h * headDim;
      for (let i = 0; i < half; i++) {
        const c = cos[p * half + i];
        const s = sin[p * half + i];
        const a = x[o + 2 * i];
        const b = x[o + 2 * i + 1];
        x[o + 2 * i] = a * c - b * s;
        x[o + 2 * i + 1] = a * s + b * c;
      }
    }
  }
}

/** `out = silu(gate) * up`. */
export function swiglu(out: FloatArray, gate: FloatArray, up: FloatArray, len: number): void {
  for (let i = 0; i < len; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/** Backward of {@link swiglu}: overwrites `dgate` and `dup`. */
export function swigluBackward(
  dgate: FloatArray,
  dup: FloatArray,
  dout: FloatArray,
  gate: FloatArray,
  up: FloatArray,
  len: number,
): void {
  for (let i = 0; i < len; i++) {
    const g = gate[i];
    const s = 1 / (1 + Math.exp(-g));
    const d = dout[i];
    dup[i] = d * g * s;
    dgate[i] = d * up[i] * s * (1 + g * (1 - s));
  }
}

/**
 * Softmax cross-entropy over the vocabulary. Returns the summed loss (natural log) over rows whose
 * target is ≥ 0; when `dlogits` is given writes `scale * (softmax − onehot)` (0 for ignored rows).
 */
export function crossEntropy(
  logits: FloatArray,
  targets: ArrayLike<number>,
  n: number,
  vocab: number,
  dlogits?: FloatArray,
  scale = 1,
): number {
  let total = 0;
  for (let r = 0; r < n; r++) {
    const o = r * vocab;
    const t = targets[r];
    if (t < 0) {
      if (dlogits) dlogits.fill(0, o, o + vocab);
      continue;
    }
    let mx = -Infinity;
    for (let i = 0; i < vocab; i++) if (logits[o + i] > mx) mx = logits[o + i];
    let sum = 0;
    if (dlogits) {
      for (let i = 0; i < vocab; i++) {
        const e = Math.exp(logits[o + i] - mx);
        dlogits[o + i] = e;
        sum += e;
      }
    } else {
      for (let i = 0; i < vocab; i++) sum += Math.exp(logits[o + i] - mx);
    }
    total += mx + Math.log(sum) - logits[o + t];
    if (dlogits) {
      const k = scale / sum;
      for (let i = 0; i < vocab; i++) dlogits[o + i] *= k;
      dlogits[o + t] -= scale;
    }
  }
  return total;
}

/** `y[r] = table[ids[r]]`. */
export function embedding(
  y: FloatArray,
  table: FloatArray,
  ids: ArrayLike<number>,
  n: number,
  dim: number,
): void {
  for (let r = 0; r < n; r++) {
    const src = ids[r] * dim;
    for (let i = 0; i < dim; i++) y[r * dim + i] = table[src + i];
  }
}

/** Backward of {@link embedding}: `dtable[ids[r]] += dy[r]`. */
export function embeddingBackward(
  dtable: FloatArray,
  dy: FloatArray,
  ids: ArrayLike<number>,
  n: number,
  dim: number,
): void {
  for (let r = 0; r < n; r++) {
    const dst = ids[r] * dim;
    for (let i = 0; i < dim; i++) dtable[dst + i] += dy[r * dim + i];
  }
}

// ---- the reference implementation (float64) ----

/** Decoded copies of frozen tensors for the reference (tests only: whole matrices in float64). */
const decoded = new WeakMap<Tensor, Float64Array>();
function decode(w: FrozenMatrix): Float64Array {
  let d = decoded.get(w.tensor);
  if (!d) {
    d = Float64Array.from(w.tensor.toF32());
    decoded.set(w.tensor, d);
  }
  return d;
}

/**
 * Plain-TypeScript float64 ops: slow, exact enough for finite differences. A frozen weight is its
 * decoded values (no activation rounding: the exact function the native kernels approximate).
 */
export const referenceOps: TrainOps<Float64Array> = {
  alloc: (n) => new Float64Array(n),
  linearFrozen(y, x, w, n) {
    referenceOps.linear(y, x, decode(w), n, w.native.cols, w.native.rows);
  },
  linearFrozenBackwardInput(dx, dy, w, n, accumulate) {
    referenceOps.linearBackwardInput(dx, dy, decode(w), n, w.native.cols, w.native.rows, accumulate);
  },
  embeddingFrozen(y, w, ids, n) {
    embedding(y, decode(w), ids, n, w.native.cols);
  },
  rmsNorm,
  rmsNormBackward,
  rope,
  swiglu,
  swigluBackward,
  crossEntropy: (logits, targets, n, vocab, dlogits, scale) =>
    crossEntropy(logits, targets, n, vocab, dlogits ?? undefined, scale),
  embeddingBackward,
  linear(y, x, w, n, inDim, outDim) {
    for (let r = 0; r < n; r++) {
      for (let o = 0; o < outDim; o++) {
        let s = 0;
        for (let i = 0; i < inDim; i++) s += x[r * inDim + i] * w[o * inDim + i];
        y[r * outDim + o] = s;
      }
    }
  },
  linearBackwardInput(dx, dy, w, n, inDim, outDim, accumulate) {
    for (let r = 0; r < n; r++) {
      for (let i = 0; i < inDim; i++) {
        let s = accumulate ? dx[r * inDim + i] : 0;
        for (let o = 0; o < outDim; o++) s += dy[r * outDim + o] * w[o * inDim + i];
        dx[r * inDim + i] = s;
      }
    }
  },
  linearBackwardWeight(dw, dy, x, n, inDim, outDim) {
    for (let o = 0; o < outDim; o++) {
      for (let i = 0; i < inDim; i++) {
        let s = 0;
        for (let r = 0; r < n; r++) s += dy[r * outDim + o] * x[r * inDim + i];
        dw[o * inDim + i] += s;
      }
    }
  },
  attention(out, probs, q, k, v, s) {
    const { batch, seq: S, nHeads, nKvHeads, headDim: hd, scale } = s;
    const group = nHeads / nKvHeads;
    const qs = nHeads * hd;
    const ks = nKvHeads * hd;
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < nHeads; h++) {
        const kh = Math.floor(h / group);
        for (let i = 0; i < S; i++) {
          const pr = ((b * nHeads + h) * S + i) * S;
          let mx = -Infinity;
          for (let j = 0; j < S; j++) {
            if (j > i) {
              probs[pr + j] = 0;
              continue;
            }
            let d = 0;
            for (let e = 0; e < hd; e++)
              d += q[(b * S + i) * qs + h * hd + e] * k[(b * S + j) * ks + kh * hd + e];
            probs[pr + j] = d * scale;
            mx = Math.max(mx, probs[pr + j]);
          }
          let sum = 0;
          for (let j = 0; j <= i; j++) {
            probs[pr + j] = Math.exp(probs[pr + j] - mx);
            sum += probs[pr + j];
          }
          for (let j = 0; j <= i; j++) probs[pr + j] /= sum;
          for (let e = 0; e < hd; e++) {
            let o = 0;
            for (let j = 0; j <= i; j++) o += probs[pr + j] * v[(b * S + j) * ks + kh * hd + e];
            out[(b * S + i) * qs + h * hd + e] = o;
          }
        }
      }
    }
  },
  attentionBackward(dq, dk, dv, q, k, v, probs, dout, s) {
    const { batch, seq: S, nHeads, nKvHeads, headDim: hd, scale } = s;
    const group = nHeads / nKvHeads;
    const qs = nHeads * hd;
    const ks = nKvHeads * hd;
    dq.fill(0);
    dk.fill(0);
    dv.fill(0);
    const dp = new Float64Array(S);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < nHeads; h++) {
        const kh = Math.floor(h / group);
        for (let i = 0; i < S; i++) {
          const pr = ((b * nHeads + h) * S + i) * S;
          const qo = (b * S + i) * qs + h * hd;
          let rowdot = 0;
          for (let j = 0; j <= i; j++) {
            const ko = (b * S + j) * ks + kh * hd;
            let d = 0;
            for (let e = 0; e < hd; e++) {
              d += dout[qo + e] * v[ko + e];
              dv[ko + e] += probs[pr + j] * dout[qo + e];
            }
            dp[j] = d;
            rowdot += probs[pr + j] * d;
          }
          for (let j = 0; j <= i; j++) {
            const ko = (b * S + j) * ks + kh * hd;
            const g = probs[pr + j] * (dp[j] - rowdot) * scale;
            for (let e = 0; e < hd; e++) {
              dq[qo + e] += g * k[ko + e];
              dk[ko + e] += g * q[qo + e];
            }
          }
        }
      }
    }
  },
};

/** Float32 ops over the native training kernels of `isa` with `threads` threads. */
export function nativeOps(options: { isa?: Isa; threads?: number } = {}): TrainOps<Float32Array> & {
  kernels: NativeTrainKernels;
} {
  const kernels = new NativeTrainKernels(options);
  return {
    kernels,
    alloc: (n) => new Float32Array(n),
    linear: (y, x, w, n, i, o) => kernels.linearForward(y, x, w, n, i, o),
    linearBackwardInput: (dx, dy, w, n, i, o, acc) => kernels.linearBackwardInput(dx, dy, w, n, i, o, acc),
    linearBackwardWeight: (dw, dy, x, n, i, o) => kernels.linearBackwardWeight(dw, dy, x, n, i, o, true),
    linearFrozen: (y, x, w, n) => kernels.linearFrozen(y, x, w.native, n),
    linearFrozenBackwardInput: (dx, dy, w, n, acc) =>
      kernels.linearFrozenBackwardInput(dx, dy, w.native, n, acc),
    embeddingFrozen: (y, w, ids, n) =>
      kernels.embeddingFrozen(
        y,
        w.native.packed ? { ...w.native, data: w.tensor.data, packed: false } : w.native,
        ids,
        n,
      ),
    attention: (out, probs, q, k, v, s) => kernels.attentionForward(out, probs, q, k, v, s),
    attentionBackward: (dq, dk, dv, q, k, v, probs, dout, s) =>
      kernels.attentionBackward(dq, dk, dv, q, k, v, probs, dout, s),
    rmsNorm: (y, x, w, n, dim, eps) => kernels.rmsNorm(y, x, w, n, dim, eps),
    rmsNormBackward: (dx, dw, dy, x, w, n, dim, eps) =>
      kernels.rmsNormBackward(dx, dw, dy, x, w, n, dim, eps),
    rope: (x, n, seq, h, hd, base, sign) => kernels.rope(x, n, seq, h, hd, base, sign),
    swiglu: (out, g, u, len) => kernels.swiglu(out, g, u, len),
    swigluBackward: (dg, du, dout, g, u, len) => kernels.swigluBackward(dg, du, dout, g, u, len),
    crossEntropy: (l, t, n, v, d, scale) => kernels.crossEntropy(l, t, n, v, d, scale),
    embeddingBackward: (dt, dy, ids, n, dim) => kernels.embeddingBackward(dt, dy, ids, n, dim),
  };
}
