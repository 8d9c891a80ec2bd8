import type { Tensor } from "./tensor.js";

/** Rotary position embedding settings (ggml's `rope_ext` arguments that Llama-family models use). */
export interface RopeParams {
  /** Attention heads in the rotated buffer. */
  nHeads: number;
  /** Elements per head. */
  headDim: number;
  /** Leading elements of each head that rotate (the rest pass through); usually `headDim`. */
  nDims: number;
  /** Base of the rotation frequencies, `rope.freq_base` (10000 for Llama 2). */
  freqBase: number;
  /** Position scale for linear RoPE scaling: 1 / `rope.scaling.factor`. */
  freqScale: number;
  /** NeoX layout rotates (i, i + nDims/2) pairs; the normal layout rotates (2i, 2i+1). */
  neox: boolean;
  /** Per-pair divisors of the frequencies (`rope_freqs.weight`, Llama 3.1 scaling), length `nDims/2`. */
  freqFactors?: Float32Array;
  /** YaRN context extension, as llama.cpp's `rope_yarn`. */
  yarn?: YarnParams;
}

/** YaRN settings (llama.cpp's `ext_factor`, `attn_factor`, `beta_fast`, `beta_slow`, `n_ctx_orig`). */
export interface YarnParams {
  /** Mix of extrapolated frequencies in the ramp, 1 for YaRN. */
  extFactor: number;
  /** Magnitude scale of the rotation. */
  attnFactor: number;
  /** High-frequency boundary of the ramp, in rotations (32). */
  betaFast: number;
  /** Low-frequency boundary of the ramp, in rotations (1). */
  betaSlow: number;
  /** Context length the model was trained at. */
  origContext: number;
}

/** Shapes of one causal attention call over a KV cache. */
export interface AttentionParams {
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (grouped-query attention shares each among `nHeads / nKvHeads` query heads). */
  nKvHeads: number;
  /** Elements per head. */
  headDim: number;
  /** Factor applied to q·k before the softmax, usually `1/sqrt(headDim)`. */
  scale: number;
  /** Gemma 2's soft-capping of attention scores, `c·tanh(s/c)`; 0 or absent for none. */
  softcap?: number;
  /**
   * With F16 caches, compute as llama.cpp's CPU flash attention does for short batches: Q
   * rounded to F16 and the weighted sum of V accumulated in F16 (rounded after every key). Less
   * precise than the default float accumulation; used to reproduce llama.cpp's numbers exactly.
   */
  f16Accumulate?: boolean;
}

/**
 * Shapes of one paged attention call: the KV cache is a pool of fixed-size blocks, and each
 * sequence reaches its positions through a block table (as in vLLM's PagedAttention).
 */
export interface PagedAttentionParams extends AttentionParams {
  /** Positions per block. */
  blockSize: number;
  /** Columns of the block-table matrix (entries per sequence). */
  maxBlocksPerSeq: number;
}

/**
 * Tensor operations the forward pass runs on. Every buffer is row-major; shapes are given in the
 * doc of each method as `[rows, cols]`. Output buffers are written, never reallocated, so callers
 * allocate once per context. Implementations are synchronous: the engine runs them off the main
 * thread (in a worker) so long calls do not block an application's event loop.
 */
/** A KV cache buffer: F32 values, or F16 as IEEE half bits. */
export type KVCacheArray = Float32Array | Uint16Array;

/**
 * A paged KV cache buffer: a {@link KVCacheArray}, or Q8_0 rows in a `Uint8Array` (each row of
 * `nKvHeads*headDim` values is its int8 quants then one f16 scale per 32 values; see
 * `kvQ8_0RowBytes`). Only the paged (batched) path reads and writes Q8_0 caches.
 */
export type PagedKVCacheArray = KVCacheArray | Uint8Array;

/**
 * Activations already converted to the layout a backend's matmul reads for some weights (their
 * `vecDotType`, e.g. Q8_0 or Q8_K blocks), written by a fused step and read by any number of
 * {@link Backend.matmulQuantized} calls. Made by {@link Backend.createActivations}; the bytes are
 * the backend's business.
 */
export interface ActivationBuffer {
  /** Backend-specific layout id (from {@link Backend.activationLayout}). */
  readonly layout: number;
  /** Values per row. */
  readonly cols: number;
  /** Rows it holds. */
  readonly rows: number;
  /** The converted rows. */
  readonly data: Uint8Array;
}

/** The two RoPE settings of one attention layer's queries and keys (they differ only in `nHeads`). */
export interface RopeQK {
  /** Settings for the query rows. */
  q: RopeParams;
  /** Settings for the key rows. */
  k: RopeParams;
}

export interface Backend {
  /** Short name for logs and benchmarks (`reference`, `native-avx2`, ...). */
  readonly name: string;

  /**
   * `y[n, w.rows] = x[n, w.cols] · wᵀ`. Activations are converted to the weight format's
   * `vecDotType` first, as ggml does (Q8_0 for Q4_0/Q8_0 weights, F16 for F16 weights).
   */
  matmul(y: Float32Array, w: Tensor, x: Float32Array, n: number): void;

  /**
   * Optional: called once per weight matrix at load, before any {@link Backend.matmul} with it. A
   * backend may build a faster layout of `w` (a repacked copy made once) and use it in later
   * matmuls; with `release`, the original pages may be dropped from memory (re-read from the file
   * if touched again). Returns true when a new layout was made. Results must not change beyond
   * float summation order.
   */
  prepareWeight?(w: Tensor, release: boolean): boolean;

  /**
   * Optional: `dst[dstOffset + i] = f16(src[i])` for `len` values, round to nearest even (F16 KV
   * cache writes). Callers fall back to `f32ToF16` per value when a backend lacks it.
   */
  toF16?(dst: Uint16Array, dstOffset: number, src: Float32Array, len: number): void;

  /**
   * Optional: quantizes `rows` rows of `rowSize` floats from `src` into rows `dstRow..` of a Q8_0
   * KV cache (`kvQ8_0RowBytes` layout, llama.cpp's Q8_0 rounding). Callers fall back to
   * `quantizeKvRowsQ8_0` when a backend lacks it.
   */
  quantizeKvQ8_0?(dst: Uint8Array, dstRow: number, src: Float32Array, rows: number, rowSize: number): void;

  /** `y[i, :] = table[ids[i], :]` decoded to floats (embedding lookup). `y` is `[ids.length, table.cols]`. */
  getRows(y: Float32Array, table: Tensor, ids: Int32Array): void;

  /** `y[n, dim] = x / sqrt(mean(x²) + eps) * weight`, per row. `y` may alias `x`. */
  rmsNorm(y: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void;

  /** Rotates `x[n, nHeads*headDim]` in place; row `i` is at position `positions[i]`. */
  rope(x: Float32Array, n: number, positions: Int32Array, params: RopeParams): void;

  /** Softmax of each row of `x[n, dim]`, in place. */
  softmax(x: Float32Array, n: number, dim: number): void;

  /**
   * Optional: `ids[t]` = index of the largest value of row `t` of `x[n, dim]` (the first of equal
   * maxima; NaN never chosen; 0 when no value exceeds -Infinity). Greedy sampling of many rows of
   * logits at once; callers without it scan the rows themselves with the same rule.
   */
  argmax?(ids: Int32Array, x: Float32Array, n: number, dim: number): void;

  /** `y[i] = silu(gate[i]) * up[i]` for `len` elements. `y` may alias either input. */
  swiglu(y: Float32Array, gate: Float32Array, up: Float32Array, len: number): void;

  /** `y[i] = gelu(gate[i]) * up[i]` (GeGLU, tanh-approximated GELU) for `len` elements. `y` may alias either input. */
  geglu(y: Float32Array, gate: Float32Array, up: Float32Array, len: number): void;

  /** `y[i] = a[i] + b[i]` for `len` elements. `y` may alias either input. */
  add(y: Float32Array, a: Float32Array, b: Float32Array, len: number): void;

  /**
   * Causal attention of `q[n, nHeads*headDim]` over a KV cache `k, v[ctx, nKvHeads*headDim]`:
   * query row `i` attends cache rows `0..positions[i]` inclusive. Writes `out[n, nHeads*headDim]`.
   * The cache is F32 (`Float32Array`) or F16 (`Uint16Array` of IEEE half bits, as llama.cpp keeps it).
   */
  attention(
    out: Float32Array,
    q: Float32Array,
    k: KVCacheArray,
    v: KVCacheArray,
    positions: Int32Array,
    n: number,
    params: AttentionParams,
  ): void;

  /**
   * Causal attention of `q[n, nHeads*headDim]` over a paged KV cache
   * `k, v[nBlocks*blockSize, nKvHeads*headDim]`. Query row `i` belongs to sequence `seqOfRow[i]`
   * and attends that sequence's positions `0..positions[i]` inclusive; position `p` of sequence
   * `s` lives in cache row `blockTables[s*maxBlocksPerSeq + floor(p/blockSize)]*blockSize +
   * p % blockSize`. Writes `out[n, nHeads*headDim]`. The cache is F32, F16 (`Uint16Array` of
   * half bits) or Q8_0 (`Uint8Array` of rows, see {@link PagedKVCacheArray}), k and v alike.
   */
  pagedAttention(
    out: Float32Array,
    q: Float32Array,
    k: PagedKVCacheArray,
    v: PagedKVCacheArray,
    positions: Int32Array,
    seqOfRow: Int32Array,
    blockTables: Int32Array,
    n: number,
    params: PagedAttentionParams,
  ): void;

  // ---- Optional fused steps. Each gives bit for bit what the unfused ops it replaces give. ----

  /**
   * Optional: the activation layout a {@link Backend.matmul} with `w` converts to, when the backend
   * can take activations pre-converted to it ({@link Backend.matmulQuantized}); `-1` when it cannot
   * (float formats, whose activations are not quantized).
   */
  activationLayout?(w: Tensor): number;

  /** Optional: a buffer for `rows` rows of `cols` activations in `layout`, allocated once. */
  createActivations?(layout: number, cols: number, rows: number): ActivationBuffer;

  /**
   * Optional: `act[n, dim] = convert(rmsNorm(x) · weight)`, i.e. {@link Backend.rmsNorm} then the
   * conversion a matmul would make, in one pass; also writes the float result to `y` when given.
   */
  rmsNormQuantize?(
    act: ActivationBuffer,
    x: Float32Array,
    weight: Float32Array,
    n: number,
    dim: number,
    eps: number,
    y?: Float32Array,
  ): void;

  /** Optional: `act[n, act.cols] = convert(silu(gate) · up)`, i.e. {@link Backend.swiglu} then the conversion. */
  swigluQuantize?(act: ActivationBuffer, gate: Float32Array, up: Float32Array, n: number): void;

  /** Optional: {@link Backend.matmul} over activations already in `activationLayout(w)`. */
  matmulQuantized?(y: Float32Array, w: Tensor, act: ActivationBuffer, n: number): void;

  /**
   * Optional: {@link Backend.rope} of `q` and of `k` (in place), then row `i` of `k` and `v`
   * (`[n, nKvHeads*headDim]`) written to row `slots[i]` of the caches `keys` / `values` (F16 caches
   * round to nearest even; Q8_0 caches quantize as {@link Backend.quantizeKvQ8_0}), in one pass
   * over the tokens.
   */
  ropeStoreKV?(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    n: number,
    positions: Int32Array,
    rope: RopeQK,
    keys: PagedKVCacheArray,
    values: PagedKVCacheArray,
    slots: Int32Array,
  ): void;

  /** Releases native resources. The backend must not be used afterwards. */
  dispose?(): void;
}
