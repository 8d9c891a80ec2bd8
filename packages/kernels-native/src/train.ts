// Training kernels: the F32 GEMM in the three layouts a linear layer's forward and backward need,
// and causal GQA attention forward/backward over packed sequences. Shapes are checked here, before
// anything crosses into C++ (native/train_addon.cpp).
import os from "node:os";
import { isComputeFormat, RyzansteinError, rowBytes, typeName } from "@ryzanstein/core-tensor";
import type { Isa } from "./index.js";
import { loadAddon, type NativeTrainEngine } from "./native.js";

/** Shape of a causal attention call over `batch` sequences of `seq` tokens each. */
export interface TrainAttentionShape {
  /** Independent sequences. */
  batch: number;
  /** Tokens per sequence. */
  seq: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (divides `nHeads`). */
  nKvHeads: number;
  /** Elements per head. */
  headDim: number;
  /** Score scale, usually 1/√headDim. */
  scale: number;
}

/**
 * A frozen weight matrix `[rows, cols]` (ggml layout, `y = x·Wᵀ`) in its storage format: F32, F16,
 * BF16, Q8_0 or Q4_0 bytes in the GGUF layout, or Q8_0/Q4_0 in the repacked layout made by
 * {@link NativeTrainKernels.repack} (`packed`). The kernels read it in place.
 */
export interface FrozenWeight {
  /** ggml type id. */
  type: number;
  /** Output features. */
  rows: number;
  /** Input features. */
  cols: number;
  /** The bytes (file layout, or repacked when `packed`). */
  data: Uint8Array;
  /** True for the repacked Q8_0/Q4_0 layout. */
  packed: boolean;
}

/** Smallest row count worth repacking (as in `NativeBackend`). */
const REPACK_MIN_ROWS = 64;

/** Options of {@link NativeTrainKernels}. */
export interface NativeTrainKernelsOptions {
  /** Threads (the caller counts as one). Default: the number of cores. */
  threads?: number;
  /** Kernel variant; default `RYZANSTEIN_ISA` or the best available. AVX-512 uses the AVX2 code. */
  isa?: Isa;
}

function check(ok: boolean, msg: string): void {
  if (!ok) throw new RyzansteinError("SHAPE_MISMATCH", msg);
}

/**
 * Native training kernels (scalar reference and AVX2+FMA variants). All tensors are row-major F32.
 * Linear layers follow ggml's layout: a weight `W` is `[out, in]` and `y = x·Wᵀ`.
 */
export class NativeTrainKernels {
  /** The variant in use. */
  readonly isa: Isa;
  /** Threads of the pool. */
  readonly threads: number;
  private engine: NativeTrainEngine | null;

  constructor(options: NativeTrainKernelsOptions = {}) {
    const addon = loadAddon();
    const available = addon.cpuIsas() as Isa[];
    const wanted =
      options.isa ?? (process.env.RYZANSTEIN_ISA as Isa | undefined) ?? available[available.length - 1];
    if (!available.includes(wanted)) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `ISA '${wanted}' is not available on this CPU (${available.join(", ")})`,
      );
    }
    const threads = options.threads ?? Math.max(1, os.availableParallelism());
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RyzansteinError("INVALID_ARGUMENT", `threads must be a positive integer, got ${threads}`);
    }
    this.isa = wanted;
    this.threads = threads;
    this.engine = new addon.TrainEngine(threads, wanted);
  }

  private get e(): NativeTrainEngine {
    if (!this.engine) throw new RyzansteinError("INVALID_ARGUMENT", "NativeTrainKernels has been disposed");
    return this.engine;
  }

  /** `y[n, out] = x[n, in] · w[out, in]ᵀ` (linear layer forward). */
  linearForward(
    y: Float32Array,
    x: Float32Array,
    w: Float32Array,
    n: number,
    inDim: number,
    outDim: number,
  ): void {
    check(
      x.length >= n * inDim && w.length >= outDim * inDim && y.length >= n * outDim,
      "linearForward: buffer too short",
    );
    this.e.gemm(y, x, inDim, 1, w, 1, inDim, n, outDim, inDim, false);
  }

  /** `dx[n, in] (+)= dy[n, out] · w[out, in]` (gradient of the input). */
  linearBackwardInput(
    dx: Float32Array,
    dy: Float32Array,
    w: Float32Array,
    n: number,
    inDim: number,
    outDim: number,
    accumulate = false,
  ): void {
    check(
      dx.length >= n * inDim && w.length >= outDim * inDim && dy.length >= n * outDim,
      "linearBackwardInput: buffer too short",
    );
    this.e.gemm(dx, dy, outDim, 1, w, inDim, 1, n, inDim, outDim, accumulate);
  }

  /** `dw[out, in] (+)= dy[n, out]ᵀ · x[n, in]` (gradient of the weight). */
  linearBackwardWeight(
    dw: Float32Array,
    dy: Float32Array,
    x: Float32Array,
    n: number,
    inDim: number,
    outDim: number,
    accumulate = true,
  ): void {
    check(
      dw.length >= outDim * inDim && x.length >= n * inDim && dy.length >= n * outDim,
      "linearBackwardWeight: buffer too short",
    );
    this.e.gemm(dw, dy, 1, outDim, x, inDim, 1, outDim, inDim, n, accumulate);
  }

  /**
   * Causal attention forward: `out [batch*seq, nHeads*headDim]`, keeping `probs
   * [batch, nHeads, seq, seq]` for {@link attentionBackward}.
   */
  attentionForward(
    out: Float32Array,
    probs: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    s: TrainAttentionShape,
  ): void {
    this.checkAttention(s, q, k, v, probs);
    check(out.length >= s.batch * s.seq * s.nHeads * s.headDim, "attentionForward: out too short");
    this.e.attentionForward(out, probs, q, k, v, s.batch, s.seq, s.nHeads, s.nKvHeads, s.headDim, s.scale);
  }

  /** Causal attention backward: overwrites `dq`, `dk`, `dv` from `dout` and the forward's `probs`. */
  attentionBackward(
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    probs: Float32Array,
    dout: Float32Array,
    s: TrainAttentionShape,
  ): void {
    this.checkAttention(s, q, k, v, probs);
    const qn = s.batch * s.seq * s.nHeads * s.headDim;
    const kn = s.batch * s.seq * s.nKvHeads * s.headDim;
    check(
      dq.length >= qn && dout.length >= qn && dk.length >= kn && dv.length >= kn,
      "attentionBackward: buffer too short",
    );
    this.e.attentionBackward(
      dq,
      dk,
      dv,
      q,
      k,
      v,
      probs,
      dout,
      s.batch,
      s.seq,
      s.nHeads,
      s.nKvHeads,
      s.headDim,
      s.scale,
    );
  }

  private checkAttention(
    s: TrainAttentionShape,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    probs: Float32Array,
  ): void {
    check(s.nHeads % s.nKvHeads === 0, "attention: nHeads must be a multiple of nKvHeads");
    const t = s.batch * s.seq;
    check(q.length >= t * s.nHeads * s.headDim, "attention: q too short");
    check(
      k.length >= t * s.nKvHeads * s.headDim && v.length >= t * s.nKvHeads * s.headDim,
      "attention: k/v too short",
    );
    check(probs.length >= t * s.nHeads * s.seq, "attention: probs too short");
  }

  /** `y = x / rms(x) * w` over `n` rows of `dim`. */
  rmsNorm(y: Float32Array, x: Float32Array, w: Float32Array, n: number, dim: number, eps: number): void {
    check(x.length >= n * dim && y.length >= n * dim && w.length >= dim, "rmsNorm: buffer too short");
    this.e.rmsNorm(y, x, w, n, dim, eps);
  }

  /** Backward of {@link rmsNorm}: `dx += ∂L/∂x`, `dw += ∂L/∂w`. */
  rmsNormBackward(
    dx: Float32Array,
    dw: Float32Array,
    dy: Float32Array,
    x: Float32Array,
    w: Float32Array,
    n: number,
    dim: number,
    eps: number,
  ): void {
    check(
      dx.length >= n * dim && dy.length >= n * dim && x.length >= n * dim,
      "rmsNormBackward: buffer too short",
    );
    check(w.length >= dim && dw.length >= dim, "rmsNormBackward: weight too short");
    this.e.rmsNormBackward(dx, dw, dy, x, w, n, dim, eps);
  }

  /**
   * Llama (adjacent-pair) RoPE in place over `n` rows of `nHeads*headDim`, row r at position
   * `r % seq`; `sign = -1` applies the inverse rotation (the backward pass).
   */
  rope(
    x: Float32Array,
    n: number,
    seq: number,
    nHeads: number,
    headDim: number,
    freqBase: number,
    sign = 1,
  ): void {
    check(headDim % 2 === 0 && x.length >= n * nHeads * headDim, "rope: bad shape");
    this.e.rope(x, n, seq, nHeads, headDim, freqBase, sign);
  }

  /** `out = silu(gate) * up`. */
  swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, len: number): void {
    check(out.length >= len && gate.length >= len && up.length >= len, "swiglu: buffer too short");
    this.e.swiglu(out, gate, up, len);
  }

  /** Backward of {@link swiglu}: overwrites `dgate` and `dup`. */
  swigluBackward(
    dgate: Float32Array,
    dup: Float32Array,
    dout: Float32Array,
    gate: Float32Array,
    up: Float32Array,
    len: number,
  ): void {
    check(
      [dgate, dup, dout, gate, up].every((a) => a.length >= len),
      "swigluBackward: buffer too short",
    );
    this.e.swigluBackward(dgate, dup, dout, gate, up, len);
  }

  /**
   * Summed softmax cross-entropy (nats) of `n` rows of `vocab` logits against `targets` (−1 =
   * ignored); with `dlogits`, writes `scale·(softmax − onehot)`.
   */
  crossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    n: number,
    vocab: number,
    dlogits: Float32Array | null,
    scale = 1,
  ): number {
    check(logits.length >= n * vocab && targets.length >= n, "crossEntropy: buffer too short");
    return this.e.crossEntropy(logits, targets, n, vocab, dlogits, scale);
  }

  /** Backward of an embedding lookup: `dtable[ids[r]] += dy[r]`. */
  embeddingBackward(dtable: Float32Array, dy: Float32Array, ids: Int32Array, n: number, dim: number): void {
    check(dy.length >= n * dim && ids.length >= n, "embeddingBackward: buffer too short");
    this.e.embeddingBackward(dtable, dy, ids, n, dim);
  }

  private checkFrozen(op: string, w: FrozenWeight): void {
    if (w === null || typeof w !== "object" || !(w.data instanceof Uint8Array))
      throw new RyzansteinError("INVALID_ARGUMENT", `${op}: w must be a FrozenWeight`);
    if (!isComputeFormat(w.type))
      throw new RyzansteinError("UNSUPPORTED_TENSOR_TYPE", `${op}: type ${w.type} is not supported`);
    check(
      Number.isSafeInteger(w.rows) && w.rows >= 0 && Number.isSafeInteger(w.cols) && w.cols >= 0,
      `${op}: bad shape`,
    );
    if ((w.type === 2 || w.type === 8) && w.cols % 32 !== 0)
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `${op}: row length ${w.cols} is not a multiple of the ${typeName(w.type)} block size 32`,
      );
    check(w.data.byteLength >= rowBytes(w.type, w.cols) * w.rows, `${op}: weight bytes too short`);
  }

  /**
   * `y[n, rows] = x[n, cols] · Wᵀ` through a frozen weight in its format, by the inference matmul
   * (Q8_0/Q4_0: activations rounded to Q8_0 blocks, as generation and ggml do).
   */
  linearFrozen(y: Float32Array, x: Float32Array, w: FrozenWeight, n: number): void {
    this.checkFrozen("linearFrozen", w);
    check(x.length >= n * w.cols && y.length >= n * w.rows, "linearFrozen: buffer too short");
    this.e.linearFrozen(y, x, w.type, w.data, w.packed, w.rows, w.cols, n);
  }

  /**
   * `dx[n, cols] (+)= dy[n, rows] · W`: the input gradient through a frozen weight, decoded 16
   * columns at a time inside the GEMM (never to F32 as a whole).
   */
  linearFrozenBackwardInput(
    dx: Float32Array,
    dy: Float32Array,
    w: FrozenWeight,
    n: number,
    accumulate = false,
  ): void {
    this.checkFrozen("linearFrozenBackwardInput", w);
    check(dx.length >= n * w.cols && dy.length >= n * w.rows, "linearFrozenBackwardInput: buffer too short");
    this.e.linearFrozenBackwardInput(dx, dy, w.type, w.data, w.packed, w.rows, w.cols, n, accumulate);
  }

  /** `y[i] = W[ids[i]]` decoded to floats (an embedding lookup; `w` in the file layout). */
  embeddingFrozen(y: Float32Array, w: FrozenWeight, ids: Int32Array, n: number): void {
    this.checkFrozen("embeddingFrozen", w);
    if (w.packed)
      throw new RyzansteinError("INVALID_ARGUMENT", "embeddingFrozen: the table must be in the file layout");
    check(ids.length >= n && y.length >= n * w.cols, "embeddingFrozen: buffer too short");
    for (let i = 0; i < n; i++) {
      if (ids[i] < 0 || ids[i] >= w.rows)
        throw new RyzansteinError(
          "OUT_OF_BOUNDS",
          `embeddingFrozen: id ${ids[i]} outside the table of ${w.rows} rows`,
        );
    }
    this.e.getRowsFrozen(y, w.type, w.data, w.rows, w.cols, n === ids.length ? ids : ids.subarray(0, n));
  }

  /**
   * The repacked copy of a Q8_0/Q4_0 weight with at least 64 rows (the layout the fast matmul
   * reads), or `w` itself for other formats and small matrices. With `release`, the source pages
   * are dropped from memory when they lie in a `mapFile` mapping, so the copy replaces them.
   */
  static repack(w: FrozenWeight, release: boolean): FrozenWeight {
    if (w.packed || (w.type !== 2 && w.type !== 8) || w.rows < REPACK_MIN_ROWS) return w;
    const data = loadAddon().repackWeights(w.type, w.data, w.rows, w.cols, release);
    return data ? { ...w, data, packed: true } : w;
  }

  /** Stops the thread pool; later calls throw. */
  dispose(): void {
    this.engine?.dispose();
    this.engine = null;
  }
}
