import {
  type ActivationBuffer,
  type AttentionParams,
  type Backend,
  f32ToF16,
  kvQ8_0RowBytes,
  type PagedAttentionParams,
  type PagedKVCacheArray,
  quantizeKvRowsQ8_0,
  type RopeParams,
  RyzansteinError,
} from "@ryzanstein/core-tensor";
import type { ModelConfig } from "./config.js";
import type { LayerWeights, ModelWeights } from "./weights.js";

/**
 * Element type of the KV cache: `f16` (default, as llama.cpp; half the memory), `f32`, or `q8_0`
 * (llama.cpp's Q8_0 per 32 values: about half the bytes of F16 again; needs headDim to be a
 * multiple of 32, as llama.cpp's quantized caches).
 */
export type KVCacheType = (typeof KV_CACHE_TYPES)[number];

/** Every {@link KVCacheType}, in the order messages and CLI choices list them. */
export const KV_CACHE_TYPES = ["f16", "f32", "q8_0"] as const;

/**
 * How attention sums over an F16 cache. `float` (default): float accumulation. `llama.cpp`: as
 * llama.cpp's CPU flash attention does for batches under 64 tokens (Q rounded to F16, the weighted
 * V sum accumulated in F16), which is slightly less precise and reproduces llama.cpp's numbers
 * bit for bit; parity checks against llama.cpp use it.
 */
export type AttentionNumerics = "float" | "llama.cpp";

/**
 * Per-sequence state: the KV cache and every scratch buffer of the forward pass, allocated once
 * so that no step allocates. `maxBatch` bounds the tokens one {@link Model.forward} call takes.
 */
export class Context {
  /** Positions the KV cache holds. */
  readonly size: number;
  /** Largest number of tokens one forward call may process. */
  readonly maxBatch: number;
  /** Element type of the KV cache. */
  readonly kvType: KVCacheType;
  /** How attention sums over the cache. */
  readonly attentionNumerics: AttentionNumerics;
  /**
   * Keys per layer, `size` rows of `nKvHeads*headDim` values: F16 bits in a `Uint16Array`, F32, or
   * Q8_0 rows in a `Uint8Array` (`kvQ8_0RowBytes` each).
   */
  readonly keys: PagedKVCacheArray[];
  /** Values per layer, same shape. */
  readonly values: PagedKVCacheArray[];
  /** Tokens whose K/V are in the cache (the next position to fill). */
  length = 0;
  /** @internal activation buffers of the fused steps; made on first use. */
  acts: FusedBuffers | undefined;

  /** @internal scratch buffers, shapes in {@link Model.forward}. */
  readonly buf: {
    x: Float32Array;
    xb: Float32Array;
    q: Float32Array;
    k: Float32Array;
    v: Float32Array;
    att: Float32Array;
    gate: Float32Array;
    up: Float32Array;
    logits: Float32Array;
    ids: Int32Array;
    positions: Int32Array;
    /** Q8_0 attention (the paged kernel over one block holding the whole cache): zeros. */
    seqOfRow: Int32Array;
    /** Its block table, `[0]`. */
    blockTable: Int32Array;
  };

  constructor(
    c: ModelConfig,
    size: number,
    maxBatch: number,
    kvType: KVCacheType = "f16",
    attentionNumerics: AttentionNumerics = "float",
  ) {
    if (!Number.isInteger(size) || size <= 0)
      throw new RyzansteinError("INVALID_ARGUMENT", `context size must be positive, got ${size}`);
    this.size = size;
    this.maxBatch = Math.max(1, Math.min(maxBatch, size));
    const n = this.maxBatch;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    const rowUnits = kvRowUnits(c, kvType);
    if (kvType === "q8_0" && c.attnSoftcap > 0)
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        "a q8_0 KV cache does not support attention soft-capping (Gemma 2) yet; use f16 or f32",
      );
    this.kvType = kvType;
    if (attentionNumerics !== "float" && attentionNumerics !== "llama.cpp")
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `attention numerics must be float or llama.cpp, got ${String(attentionNumerics)}`,
      );
    this.attentionNumerics = attentionNumerics;
    const cache = (): PagedKVCacheArray => new KV_CACHE_ARRAYS[kvType](size * rowUnits);
    this.keys = Array.from({ length: c.nLayers }, cache);
    this.values = Array.from({ length: c.nLayers }, cache);
    this.buf = {
      x: new Float32Array(n * c.dim),
      xb: new Float32Array(n * Math.max(c.dim, qDim)),
      q: new Float32Array(n * qDim),
      k: new Float32Array(n * kvDim),
      v: new Float32Array(n * kvDim),
      att: new Float32Array(n * qDim),
      gate: new Float32Array(n * c.ffnDim),
      up: new Float32Array(n * c.ffnDim),
      logits: new Float32Array(n * c.vocabSize),
      ids: new Int32Array(n),
      positions: new Int32Array(n),
      seqOfRow: new Int32Array(n),
      blockTable: new Int32Array(1),
    };
  }

  /** Forgets everything from position `from` on (0 clears the sequence). */
  truncate(from = 0): void {
    this.length = Math.min(this.length, Math.max(0, from));
  }
}

/**
 * The typed array of each KV cache type: F16 as half bits, F32, Q8_0 as the bytes of its rows
 * (see {@link kvRowUnits}). @internal
 */
export const KV_CACHE_ARRAYS = {
  f16: Uint16Array,
  f32: Float32Array,
  q8_0: Uint8Array,
} as const satisfies Record<KVCacheType, unknown>;

/**
 * Array elements of one KV cache row of `kvType` (`nKvHeads × headDim` values; for `q8_0` the
 * bytes of a Q8_0 row). Checks the type and, for `q8_0`, that headDim is a multiple of 32, as
 * llama.cpp's quantized caches need: a block then never spans two heads, whose value ranges differ
 * (with headDim 8, one scale would cover 4 heads). @internal
 */
export function kvRowUnits(c: ModelConfig, kvType: KVCacheType): number {
  const rowSize = c.nKvHeads * c.headDim;
  if (!KV_CACHE_TYPES.includes(kvType))
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `KV cache type must be ${KV_CACHE_TYPES.slice(0, -1).join(", ")} or ${KV_CACHE_TYPES.at(-1)}, got ${String(kvType)}`,
    );
  if (kvType !== "q8_0") return rowSize;
  if (c.headDim % 32 !== 0)
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `a q8_0 KV cache needs headDim to be a multiple of 32 (a Q8_0 block must not span two heads, as in llama.cpp); this model has headDim ${c.headDim}`,
    );
  return kvQ8_0RowBytes(rowSize);
}

/**
 * Writes `rows` rows of `src` (`[rows, rowSize]`) into a KV cache from cache row `row` on: F32 as
 * is, F16 converted, Q8_0 quantized (with the backend's kernels when it has them). @internal
 */
export function writeKvRows(
  b: Backend,
  cache: PagedKVCacheArray,
  row: number,
  src: Float32Array,
  rows: number,
  rowSize: number,
): void {
  const at = row * rowSize;
  const len = rows * rowSize;
  if (cache instanceof Float32Array) cache.set(src.subarray(0, len), at);
  else if (cache instanceof Uint8Array) {
    if (b.quantizeKvQ8_0) b.quantizeKvQ8_0(cache, row, src, rows, rowSize);
    else quantizeKvRowsQ8_0(cache, row, src, rows, rowSize);
  } else if (b.toF16) b.toF16(cache, at, src, len);
  else for (let i = 0; i < len; i++) cache[at + i] = f32ToF16(src[i]);
}

/** Which rows of logits a forward call returns. */
export type LogitsMode = "last" | "all";

/** Options of {@link Model}. */
export interface ModelOptions {
  /**
   * Run the fused steps where the backend has them and the weights' activations are quantized
   * (RMSNorm + activation quantization for Q/K/V and gate/up, SwiGLU + quantization for the down
   * projection, RoPE + KV-cache write); results are bit-identical either way. Default: true,
   * unless the environment variable `RYZANSTEIN_FUSED` is `0` (for A/B measurements).
   */
  fused?: boolean;
}

/**
 * Activation layouts of one layer's fused steps (`-1`: that step runs unfused): `attn` for the
 * input of Q/K/V, `ffn` for the input of gate/up, `down` for the SwiGLU output feeding the down
 * projection. A step fuses only when every matmul reading its input takes the same layout.
 */
interface FusedLayer {
  attn: number;
  ffn: number;
  down: number;
}

/** The fused steps a model runs, decided once at load (see {@link ModelOptions.fused}). @internal */
export interface FusedPlan {
  layers: FusedLayer[];
  /** Layout of the classifier's input, or -1. */
  output: number;
  /** RoPE and the KV-cache write in one step. */
  ropeStore: boolean;
}

/**
 * Which steps of `weights` can run fused on `backend`: none when `enabled` is false or the backend
 * lacks the fused ops (a LoRA-wrapped backend hides them so its adapter terms are not skipped).
 */
export function planFusion(
  config: ModelConfig,
  weights: ModelWeights,
  backend: Backend,
  enabled: boolean,
): FusedPlan | undefined {
  const b = backend;
  if (!enabled) return undefined;
  const ropeStore = typeof b.ropeStoreKV === "function";
  if (!b.activationLayout || !b.createActivations || !b.rmsNormQuantize || !b.matmulQuantized) {
    return ropeStore ? { layers: [], output: -1, ropeStore } : undefined;
  }
  const layout = (w: ModelWeights["output"]) => b.activationLayout?.(w) ?? -1;
  const shared = (...ws: ModelWeights["output"][]) => {
    const l = layout(ws[0]);
    return ws.every((w) => layout(w) === l) ? l : -1;
  };
  const swiglu = config.activation === "silu" && typeof b.swigluQuantize === "function";
  return {
    layers: weights.layers.map((l) => ({
      attn: shared(l.wq, l.wk, l.wv),
      ffn: shared(l.wGate, l.wUp),
      down: swiglu ? layout(l.wDown) : -1,
    })),
    output: layout(weights.output),
    ropeStore,
  };
}

/** The activation buffers of a plan's fused steps, per layer (absent: that step runs unfused). @internal */
export interface FusedBuffers {
  layers: { attn?: ActivationBuffer; ffn?: ActivationBuffer; down?: ActivationBuffer }[];
  output?: ActivationBuffer;
}

/**
 * The attention block's input projections over `n` rows: `q, k, v = W{q,k,v} · norm(x)`. With fused
 * buffers `fa`, the normed rows go straight into the activation layout the three matmuls read
 * (converted once). Shared by the single-sequence and the batched forward pass; `xb` is scratch.
 */
export function projectQKV(
  b: Backend,
  c: ModelConfig,
  layer: LayerWeights,
  fa: FusedBuffers["layers"][number] | undefined,
  x: Float32Array,
  xb: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  n: number,
): void {
  if (fa?.attn) {
    const a = fa.attn;
    b.rmsNormQuantize?.(a, x, layer.attnNorm, n, c.dim, c.normEps); // a [n, dim] quantized
    b.matmulQuantized?.(q, layer.wq, a, n);
    b.matmulQuantized?.(k, layer.wk, a, n);
    b.matmulQuantized?.(v, layer.wv, a, n);
  } else {
    b.rmsNorm(xb, x, layer.attnNorm, n, c.dim, c.normEps); // xb [n, dim]
    b.matmul(q, layer.wq, xb, n);
    b.matmul(k, layer.wk, xb, n);
    b.matmul(v, layer.wv, xb, n);
  }
}

/**
 * The gated feed-forward block of one layer over `n` rows: `xb = down(act(gate(norm x)) · up(norm x))`
 * (SwiGLU, or GeGLU for Gemma). With fused buffers `fa`, the normed rows and the gated product go
 * straight into the activation layout the next matmul reads. Shared by the single-sequence and
 * the batched forward pass. `gate` and `up` are scratch of n × ffnDim.
 */
export function feedForward(
  b: Backend,
  c: ModelConfig,
  layer: LayerWeights,
  fa: FusedBuffers["layers"][number] | undefined,
  x: Float32Array,
  xb: Float32Array,
  gate: Float32Array,
  up: Float32Array,
  n: number,
): void {
  if (fa?.ffn) {
    const a = fa.ffn;
    b.rmsNormQuantize?.(a, x, layer.ffnNorm, n, c.dim, c.normEps); // a [n, dim] quantized
    b.matmulQuantized?.(gate, layer.wGate, a, n); // gate [n, ffnDim]
    b.matmulQuantized?.(up, layer.wUp, a, n); // up [n, ffnDim]
  } else {
    b.rmsNorm(xb, x, layer.ffnNorm, n, c.dim, c.normEps); // xb [n, dim]
    b.matmul(gate, layer.wGate, xb, n); // gate [n, ffnDim]
    b.matmul(up, layer.wUp, xb, n); // up [n, ffnDim]
  }
  if (fa?.down) {
    const a = fa.down;
    b.swigluQuantize?.(a, gate, up, n); // a = quantized silu(gate) * up
    b.matmulQuantized?.(xb, layer.wDown, a, n); // xb [n, dim]
  } else {
    if (c.activation === "gelu")
      b.geglu(gate, gate, up, n * c.ffnDim); // gate = gelu(gate) * up
    else b.swiglu(gate, gate, up, n * c.ffnDim); // gate = silu(gate) * up
    b.matmul(xb, layer.wDown, gate, n); // xb [n, dim]
  }
}

/**
 * Buffers of `rows` rows for a plan's fused steps, made once: one per (layout, width) in use,
 * shared by the layers (the steps of a forward pass run one after another).
 */
export function fusedActivations(
  plan: FusedPlan,
  config: ModelConfig,
  backend: Backend,
  rows: number,
): FusedBuffers {
  const made = new Map<string, ActivationBuffer>();
  const get = (layout: number, cols: number): ActivationBuffer | undefined => {
    if (layout < 0 || !backend.createActivations) return undefined;
    const key = `${layout}:${cols}`;
    let a = made.get(key);
    if (!a) {
      a = backend.createActivations(layout, cols, rows);
      made.set(key, a);
    }
    return a;
  };
  return {
    layers: plan.layers.map((l) => ({
      attn: get(l.attn, config.dim),
      ffn: get(l.ffn, config.dim),
      down: get(l.down, config.ffnDim),
    })),
    output: get(plan.output, config.dim),
  };
}

/** A loaded Llama-family model bound to a backend. The forward pass reads top to bottom. */
export class Model {
  /** Hyper-parameters. */
  readonly config: ModelConfig;
  /** Weights, in their file layout. */
  readonly weights: ModelWeights;
  /** Where the arithmetic runs. */
  readonly backend: Backend;
  private readonly ropeParams: { q: RopeParams; k: RopeParams };
  private readonly attnParams: AttentionParams;
  private readonly attnParamsF16: AttentionParams;
  /** The fused steps in use (undefined: none). @internal */
  readonly fusion: FusedPlan | undefined;

  constructor(config: ModelConfig, weights: ModelWeights, backend: Backend, options: ModelOptions = {}) {
    this.config = config;
    this.weights = weights;
    this.backend = backend;
    const rope = (nHeads: number): RopeParams => ({
      nHeads,
      headDim: config.headDim,
      nDims: config.ropeDims,
      freqBase: config.ropeFreqBase,
      freqScale: config.ropeFreqScale,
      neox: config.ropeNeox,
      ...(weights.ropeFreqs ? { freqFactors: weights.ropeFreqs } : {}),
      ...(config.ropeYarn ? { yarn: config.ropeYarn } : {}),
    });
    this.ropeParams = { q: rope(config.nHeads), k: rope(config.nKvHeads) };
    this.attnParams = {
      nHeads: config.nHeads,
      nKvHeads: config.nKvHeads,
      headDim: config.headDim,
      scale: config.attentionScale,
      ...(config.attnSoftcap ? { softcap: config.attnSoftcap } : {}),
    };
    this.attnParamsF16 = { ...this.attnParams, f16Accumulate: true };
    // Let the backend make its faster weight layouts once (repacking); the file pages of a matrix
    // are released only when nothing else reads them (a tied output table is also the embedding).
    if (backend.prepareWeight) {
      for (const l of weights.layers) {
        for (const m of [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown]) backend.prepareWeight(m, true);
      }
      if (weights.output !== weights.tokenEmbd) backend.prepareWeight(weights.output, true);
    }
    this.fusion = planFusion(config, weights, backend, options.fused ?? process.env.RYZANSTEIN_FUSED !== "0");
  }

  /** A fresh context (KV cache and scratch) for one sequence. */
  createContext(
    size = this.config.contextLength,
    maxBatch = 512,
    kvType: KVCacheType = "f16",
    attentionNumerics: AttentionNumerics = "float",
  ): Context {
    return new Context(this.config, size, maxBatch, kvType, attentionNumerics);
  }

  /**
   * Appends `tokens` to the sequence in `ctx` and returns logits: `[vocab]` for the last token, or
   * `[tokens.length, vocab]` with `mode = "all"`. Prompts longer than `ctx.maxBatch` are processed
   * in chunks; prefill and decode are the same code. The returned array is a view into the context's
   * scratch memory, valid until the next call.
   */
  forward(ctx: Context, tokens: ArrayLike<number>, mode: LogitsMode = "last"): Float32Array {
    if (tokens.length === 0)
      throw new RyzansteinError("INVALID_ARGUMENT", "forward needs at least one token");
    if (ctx.length + tokens.length > ctx.size) {
      throw new RyzansteinError(
        "CONTEXT_OVERFLOW",
        `${ctx.length + tokens.length} tokens do not fit the context of ${ctx.size}`,
      );
    }
    if (mode === "all" && tokens.length > ctx.maxBatch) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `logits for all ${tokens.length} tokens need maxBatch ≥ ${tokens.length}`,
      );
    }
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) {
        throw new RyzansteinError(
          "OUT_OF_BOUNDS",
          `token id ${t} is outside the vocabulary of ${this.config.vocabSize}`,
        );
      }
    }
    let logits = ctx.buf.logits;
    for (let start = 0; start < tokens.length; start += ctx.maxBatch) {
      const n = Math.min(ctx.maxBatch, tokens.length - start);
      for (let i = 0; i < n; i++) {
        ctx.buf.ids[i] = tokens[start + i];
        ctx.buf.positions[i] = ctx.length + i;
      }
      logits = this.step(ctx, n, mode);
      ctx.length += n;
    }
    return logits;
  }

  /**
   * Causal attention over the cache. With a sliding window, a query past the window sees a view of
   * the cache that starts where its window does (its keys already carry their RoPE positions).
   */
  private attend(
    layer: number,
    ctx: Context,
    out: Float32Array,
    q: Float32Array,
    keys: PagedKVCacheArray,
    values: PagedKVCacheArray,
    positions: Int32Array,
    n: number,
    params: AttentionParams,
  ): void {
    const c = this.config;
    const windowed = c.slidingWindowLayers === "all" || layer % 2 === 0;
    const window = windowed ? c.slidingWindow : 0;
    if (window <= 0 || positions[n - 1] < window) {
      this.attendRows(ctx, out, q, keys, values, positions, n, params, ctx.size);
      return;
    }
    const qRow = this.config.nHeads * this.config.headDim;
    const rowUnits = keys.length / ctx.size; // array elements per cache row
    const last = new Int32Array(1);
    for (let i = 0; i < n; i++) {
      const start = Math.max(0, positions[i] - window + 1);
      last[0] = positions[i] - start;
      this.attendRows(
        ctx,
        out.subarray(i * qRow, (i + 1) * qRow),
        q.subarray(i * qRow, (i + 1) * qRow),
        keys.subarray(start * rowUnits),
        values.subarray(start * rowUnits),
        last,
        1,
        params,
        ctx.size - start,
      );
    }
  }

  /**
   * Attention of `n` query rows over the first cache rows of `keys`/`values` (`rows` of them in
   * the arrays). A Q8_0 cache goes through the paged op, as one block holding every row: the
   * kernel that reads Q8_0 rows is the batched engine's.
   */
  private attendRows(
    ctx: Context,
    out: Float32Array,
    q: Float32Array,
    keys: PagedKVCacheArray,
    values: PagedKVCacheArray,
    positions: Int32Array,
    n: number,
    params: AttentionParams,
    rows: number,
  ): void {
    if (keys instanceof Uint8Array || values instanceof Uint8Array) {
      const paged: PagedAttentionParams = { ...params, blockSize: rows, maxBlocksPerSeq: 1 };
      const { seqOfRow, blockTable } = ctx.buf;
      this.backend.pagedAttention(out, q, keys, values, positions, seqOfRow, blockTable, n, paged);
    } else {
      this.backend.attention(out, q, keys, values, positions, n, params);
    }
  }

  /**
   * Dynamic NTK: the base for a step whose sequence reaches `seqLen` positions (transformers'
   * `dynamic_rope_update`: grown past the original context, the original base within it).
   */
  private updateRopeBase(seqLen: number): void {
    const d = this.config.ropeDynamic;
    if (!d) return;
    const dims = this.config.ropeDims;
    const base =
      seqLen > d.origContext
        ? this.config.ropeFreqBase *
          ((d.factor * seqLen) / d.origContext - (d.factor - 1)) ** (dims / (dims - 2))
        : this.config.ropeFreqBase;
    this.ropeParams.q.freqBase = base;
    this.ropeParams.k.freqBase = base;
  }

  /** Adds `bias` to each of the `n` rows of `x`. */
  private addBias(x: Float32Array, bias: Float32Array, n: number): void {
    const len = bias.length;
    for (let i = 0; i < n; i++) {
      const row = x.subarray(i * len, (i + 1) * len);
      this.backend.add(row, row, bias, len);
    }
  }

  /** One forward pass over `n` tokens whose ids and positions are in `ctx.buf`. */
  private step(ctx: Context, n: number, mode: LogitsMode): Float32Array {
    const c = this.config;
    const w = this.weights;
    const b = this.backend;
    const { x, xb, q, k, v, att, gate, up, logits } = ctx.buf;
    const ids = ctx.buf.ids.subarray(0, n);
    const positions = ctx.buf.positions.subarray(0, n);
    const kvDim = c.nKvHeads * c.headDim;
    const fused = this.fusion;
    if (fused && !ctx.acts) ctx.acts = fusedActivations(fused, c, b, ctx.maxBatch);
    const acts = ctx.acts;

    // llama.cpp's CPU flash attention takes its F16-accumulating path for batches under 64 rows.
    const attn =
      ctx.attentionNumerics === "llama.cpp" && ctx.kvType === "f16" && n < 64
        ? this.attnParamsF16
        : this.attnParams;

    this.updateRopeBase(positions[n - 1] + 1);
    b.getRows(x, w.tokenEmbd, ids); // x [n, dim]
    if (c.embeddingScale !== 1) for (let i = 0; i < n * c.dim; i++) x[i] *= c.embeddingScale;

    for (let l = 0; l < c.nLayers; l++) {
      const layer = w.layers[l];

      // Attention block. Fused: the normed rows go straight into the activation layout Q/K/V read.
      const fa = acts?.layers[l];
      projectQKV(b, c, layer, fa, x, xb, q, k, v, n); // q [n, nHeads*headDim], k/v [n, nKvHeads*headDim]
      if (layer.bq && layer.bk && layer.bv) {
        this.addBias(q, layer.bq, n);
        this.addBias(k, layer.bk, n);
        this.addBias(v, layer.bv, n);
      }
      const keys = ctx.keys[l]; // [ctx, kvDim], positions are consecutive
      const values = ctx.values[l];
      if (fused?.ropeStore && b.ropeStoreKV) {
        // Cache rows are the positions (consecutive from positions[0]).
        b.ropeStoreKV(q, k, v, n, positions, this.ropeParams, keys, values, positions);
      } else {
        b.rope(q, n, positions, this.ropeParams.q);
        b.rope(k, n, positions, this.ropeParams.k);
        writeKvRows(b, keys, positions[0], k, n, kvDim);
        writeKvRows(b, values, positions[0], v, n, kvDim);
      }
      this.attend(l, ctx, att, q, keys, values, positions, n, attn); // att [n, nHeads*headDim]
      b.matmul(xb, layer.wo, att, n); // xb [n, dim]
      if (layer.postAttnNorm) b.rmsNorm(xb, xb, layer.postAttnNorm, n, c.dim, c.normEps);
      b.add(x, x, xb, n * c.dim); // residual

      // Feed-forward block (gated: SwiGLU, or GeGLU for Gemma).
      feedForward(b, c, layer, fa, x, xb, gate, up, n); // xb [n, dim]
      if (layer.postFfnNorm) b.rmsNorm(xb, xb, layer.postFfnNorm, n, c.dim, c.normEps);
      b.add(x, x, xb, n * c.dim); // residual
    }

    // Final norm and classifier, only for the rows whose logits are wanted.
    const rows = mode === "all" ? n : 1;
    const from = mode === "all" ? x : x.subarray((n - 1) * c.dim, n * c.dim);
    if (acts?.output) {
      const a = acts.output;
      b.rmsNormQuantize?.(a, from, w.outputNorm, rows, c.dim, c.normEps);
      b.matmulQuantized?.(logits, w.output, a, rows); // logits [rows, vocab]
    } else {
      b.rmsNorm(xb, from, w.outputNorm, rows, c.dim, c.normEps);
      b.matmul(logits, w.output, xb, rows); // logits [rows, vocab]
    }
    return this.softcap(logits.subarray(0, rows * c.vocabSize));
  }

  /** Gemma 2's final soft-capping, `c·tanh(logit/c)`, in place. */
  private softcap(logits: Float32Array): Float32Array {
    const cap = this.config.finalSoftcap;
    if (cap > 0) for (let i = 0; i < logits.length; i++) logits[i] = cap * Math.tanh(logits[i] / cap);
    return logits;
  }
}
