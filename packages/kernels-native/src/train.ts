// Training kernels: the F32 GEMM in the three layouts a linear layer's forward and backward need,
// and causal GQA attention forward/backward over packed sequences. Shapes are checked here, before
// anything crosses into C++ (native/train_addon.cpp).
import os from "node:os";
import { RyzansteinError } from "@ryzanstein/core-tensor";
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

  /** Stops the thread pool; later calls throw. */
  dispose(): void {
    this.engine?.dispose();
    this.engine = null;
  }
}
