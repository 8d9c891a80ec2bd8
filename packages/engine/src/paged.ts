import {
  type PagedAttentionParams,
  type PagedKVCacheArray,
  type RopeParams,
  RyzansteinError,
} from "@ryzanstein/core-tensor";
import {
  type FusedBuffers,
  feedForward,
  fusedActivations,
  KV_CACHE_ARRAYS,
  type KVCacheType,
  kvRowUnits,
  type Model,
  projectQKV,
  writeKvRows,
} from "./model.js";

/**
 * The KV cache of continuous batching: per layer, `numBlocks` blocks of `blockSize` positions,
 * allocated once. Which sequence owns which block is decided elsewhere (the batching package's
 * block pool); the forward pass reaches positions through block tables. F16 by default, like the
 * single-sequence {@link Context} (half the memory and half the bytes attention reads per step).
 *
 * With `q8_0`, each cache row of `rowSize` values is llama.cpp's Q8_0 as a struct of arrays: the
 * `rowSize` int8 quants, then one f16 scale per 32 values (`kvQ8_0RowBytes(rowSize)` bytes, ~53%
 * of an F16 row), quantized as llama.cpp's `--cache-type-k/v q8_0` does. Attention reads about
 * half the bytes of an F16 cache; values are rounded to ~2-3 significant digits per 32-value block.
 * Needs `headDim` to be a multiple of 32, as llama.cpp's quantized K cache does: a block then never
 * spans two heads, whose value ranges differ (with headDim 8, one scale would cover 4 heads).
 */
export class PagedKvCache {
  /** Blocks per layer. */
  readonly numBlocks: number;
  /** Positions per block. */
  readonly blockSize: number;
  /** Values per position (nKvHeads × headDim). */
  readonly rowSize: number;
  /** Array elements per position: `rowSize`, or for `q8_0` the bytes of a row (`kvQ8_0RowBytes`). */
  readonly rowUnits: number;
  /** Element type of the cache. */
  readonly kvType: KVCacheType;
  /**
   * Keys per layer, `numBlocks*blockSize` rows of `rowUnits` elements: F16 bits in a `Uint16Array`,
   * F32, or Q8_0 rows in a `Uint8Array`.
   */
  readonly keys: PagedKVCacheArray[];
  /** Values per layer, same shape. */
  readonly values: PagedKVCacheArray[];

  constructor(model: Model, numBlocks: number, blockSize: number, kvType: KVCacheType = "f16") {
    const c = model.config;
    if (!Number.isInteger(numBlocks) || numBlocks < 1 || !Number.isInteger(blockSize) || blockSize < 1)
      throw new RyzansteinError("INVALID_ARGUMENT", "numBlocks and blockSize must be positive integers");
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.kvType = kvType;
    this.rowSize = c.nKvHeads * c.headDim;
    this.rowUnits = kvRowUnits(c, kvType);
    const alloc = (): PagedKVCacheArray => new KV_CACHE_ARRAYS[kvType](numBlocks * blockSize * this.rowUnits);
    this.keys = Array.from({ length: c.nLayers }, alloc);
    this.values = Array.from({ length: c.nLayers }, alloc);
  }

  /** Bytes of K/V per block, over all layers. */
  static bytesPerBlock(model: Model, blockSize: number, kvType: KVCacheType = "f16"): number {
    const units = kvRowUnits(model.config, kvType);
    return 2 * KV_CACHE_ARRAYS[kvType].BYTES_PER_ELEMENT * model.config.nLayers * blockSize * units;
  }

  /** Copies block `src` into block `dst` in every layer (copy-on-write). */
  copyBlock(src: number, dst: number): void {
    const n = this.blockSize * this.rowUnits;
    for (const t of [...this.keys, ...this.values]) t.copyWithin(dst * n, src * n, (src + 1) * n);
  }
}

/** One sequence's share of a batched step. */
export interface BatchSequence {
  /** Token ids to run. */
  tokens: ArrayLike<number>;
  /** Position of the first token. */
  start: number;
  /** Block ids covering positions `0..start + tokens.length - 1`. */
  blockTable: ArrayLike<number>;
  /** Return logits of the last token. */
  logits: boolean;
  /** Return the final-norm hidden state of every token (embeddings). */
  hidden?: boolean;
}

/** Outputs of {@link BatchRunner.forward}; views into scratch memory, valid until the next call. */
export interface BatchOutput {
  /** `[rows, vocab]`, one row per sequence with `logits: true`, in order. */
  logits: Float32Array;
  /** Per sequence with `hidden: true`, in order: `[tokens.length, dim]` after the output norm. */
  hidden: Float32Array[];
}

/**
 * The batched forward pass of continuous batching: the tokens of every sequence in a step run
 * through each matmul together as one `[n, dim]` batch; K/V are written into, and attention reads
 * them through, each sequence's block table. Buffers are allocated once for `maxTokens` rows.
 */
export class BatchRunner {
  /**
   * The batched step implements the Llama layout (GQA, normal or NeoX RoPE, linear scaling). Models
   * that need more are refused here rather than run wrongly; `Model.forward` runs them all.
   */
  static checkSupported(model: Model): void {
    const c = model.config;
    const w = model.weights;
    const missing = [
      w.layers.some((l) => l.bq) && "Q/K/V biases",
      c.activation !== "silu" && "GeGLU",
      c.embeddingScale !== 1 && "embedding scaling",
      w.layers.some((l) => l.postAttnNorm) && "post-norms",
      (c.attnSoftcap > 0 || c.finalSoftcap > 0) && "soft-capping",
      c.slidingWindow > 0 && "sliding-window attention",
      (c.ropeYarn || c.ropeDynamic || w.ropeFreqs) && "YaRN / dynamic / Llama 3.1 RoPE scaling",
    ].filter(Boolean);
    if (missing.length) {
      throw new RyzansteinError(
        "UNSUPPORTED_ARCHITECTURE",
        `the batched engine (ryzanstein serve) does not run ${c.architecture} models yet: it lacks ${missing.join(", ")}; \`ryzanstein run\` and loadModel() do`,
      );
    }
  }

  /** The model. */
  readonly model: Model;
  /** The paged KV cache. */
  readonly cache: PagedKvCache;
  /** Largest number of tokens in one step. */
  readonly maxTokens: number;
  /** Largest number of sequences in one step. */
  readonly maxSeqs: number;
  /** Entries per block table row. */
  readonly maxBlocksPerSeq: number;
  private readonly rope: { q: RopeParams; k: RopeParams };
  private readonly attn: PagedAttentionParams;
  /** Activation buffers of the model's fused steps (`Model.fusion`), `maxTokens` rows each. */
  private readonly acts: FusedBuffers | undefined;
  private readonly buf: {
    x: Float32Array; // [maxTokens, dim] residual stream
    xb: Float32Array; // [maxTokens, max(dim, qDim)]
    q: Float32Array; // [maxTokens, nHeads*headDim]
    k: Float32Array; // [maxTokens, nKvHeads*headDim]
    v: Float32Array; // [maxTokens, nKvHeads*headDim]
    att: Float32Array; // [maxTokens, nHeads*headDim]
    gate: Float32Array; // [maxTokens, ffnDim]
    up: Float32Array; // [maxTokens, ffnDim]
    last: Float32Array; // [maxSeqs, dim] rows whose logits are wanted
    logits: Float32Array; // [maxSeqs, vocab]
    ids: Int32Array; // [maxTokens]
    positions: Int32Array; // [maxTokens]
    seqOfRow: Int32Array; // [maxTokens]
    slots: Int32Array; // [maxTokens] cache row each token's K/V goes to
    tables: Int32Array; // [maxSeqs, maxBlocksPerSeq]
  };

  constructor(model: Model, cache: PagedKvCache, maxTokens: number, maxSeqs: number, maxContext: number) {
    const c = model.config;
    BatchRunner.checkSupported(model);
    this.model = model;
    this.cache = cache;
    this.maxTokens = maxTokens;
    this.maxSeqs = maxSeqs;
    this.maxBlocksPerSeq = Math.ceil(maxContext / cache.blockSize);
    const rope = (nHeads: number): RopeParams => ({
      nHeads,
      headDim: c.headDim,
      nDims: c.ropeDims,
      freqBase: c.ropeFreqBase,
      freqScale: c.ropeFreqScale,
      neox: c.ropeNeox,
    });
    this.rope = { q: rope(c.nHeads), k: rope(c.nKvHeads) };
    this.attn = {
      nHeads: c.nHeads,
      nKvHeads: c.nKvHeads,
      headDim: c.headDim,
      scale: 1 / Math.sqrt(c.headDim),
      blockSize: cache.blockSize,
      maxBlocksPerSeq: this.maxBlocksPerSeq,
    };
    this.acts = model.fusion
      ? fusedActivations(model.fusion, c, model.backend, Math.max(maxTokens, maxSeqs))
      : undefined;
    const n = maxTokens;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    this.buf = {
      x: new Float32Array(n * c.dim),
      xb: new Float32Array(n * Math.max(c.dim, qDim)),
      q: new Float32Array(n * qDim),
      k: new Float32Array(n * kvDim),
      v: new Float32Array(n * kvDim),
      att: new Float32Array(n * qDim),
      gate: new Float32Array(n * c.ffnDim),
      up: new Float32Array(n * c.ffnDim),
      last: new Float32Array(maxSeqs * c.dim),
      logits: new Float32Array(maxSeqs * c.vocabSize),
      ids: new Int32Array(n),
      positions: new Int32Array(n),
      seqOfRow: new Int32Array(n),
      slots: new Int32Array(n),
      tables: new Int32Array(maxSeqs * this.maxBlocksPerSeq),
    };
  }

  /**
   * Writes the `n` rows of `src` (`[n, kvDim]`) to their cache slots. Rows whose slots follow each
   * other (a prefill chunk within a block) go in one call; an F16 cache converts on the way, a
   * Q8_0 cache quantizes.
   */
  private store(cache: PagedKVCacheArray, src: Float32Array, n: number): void {
    const slots = this.buf.slots;
    const kvDim = this.cache.rowSize;
    for (let i = 0; i < n; ) {
      let j = i + 1;
      while (j < n && slots[j] === slots[j - 1] + 1) j++;
      writeKvRows(this.model.backend, cache, slots[i], src.subarray(i * kvDim, j * kvDim), j - i, kvDim);
      i = j;
    }
  }

  /** Runs one step over `seqs` (at most `maxSeqs` sequences and `maxTokens` tokens in total). */
  forward(seqs: readonly BatchSequence[]): BatchOutput {
    const c = this.model.config;
    const w = this.model.weights;
    const b = this.model.backend;
    const { x, xb, q, k, v, att, gate, up, last, logits, tables, slots } = this.buf;
    const bs = this.cache.blockSize;

    // Lay the step out as rows: ids, positions, owning sequence, cache slot of each token.
    if (seqs.length > this.maxSeqs)
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `${seqs.length} sequences exceed maxSeqs ${this.maxSeqs}`,
      );
    let n = 0;
    for (let s = 0; s < seqs.length; s++) {
      const seq = seqs[s];
      const end = seq.start + seq.tokens.length;
      if (n + seq.tokens.length > this.maxTokens)
        throw new RyzansteinError("INVALID_ARGUMENT", `the step exceeds maxTokens ${this.maxTokens}`);
      if (
        seq.tokens.length === 0 ||
        Math.ceil(end / bs) > Math.min(seq.blockTable.length, this.maxBlocksPerSeq)
      )
        throw new RyzansteinError("OUT_OF_BOUNDS", `sequence ${s}: ${end} positions exceed its block table`);
      for (let j = 0; j < this.maxBlocksPerSeq; j++)
        tables[s * this.maxBlocksPerSeq + j] = j < seq.blockTable.length ? seq.blockTable[j] : 0;
      for (let i = 0; i < seq.tokens.length; i++, n++) {
        const t = seq.tokens[i];
        if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize)
          throw new RyzansteinError(
            "OUT_OF_BOUNDS",
            `token id ${t} is outside the vocabulary of ${c.vocabSize}`,
          );
        const p = seq.start + i;
        this.buf.ids[n] = t;
        this.buf.positions[n] = p;
        this.buf.seqOfRow[n] = s;
        const block = seq.blockTable[Math.floor(p / bs)];
        if (!(block >= 0 && block < this.cache.numBlocks))
          throw new RyzansteinError("OUT_OF_BOUNDS", `block ${block} is outside the cache`);
        slots[n] = block * bs + (p % bs);
      }
    }
    const ids = this.buf.ids.subarray(0, n);
    const positions = this.buf.positions.subarray(0, n);
    const seqOfRow = this.buf.seqOfRow.subarray(0, n);

    b.getRows(x, w.tokenEmbd, ids); // x [n, dim]
    const fused = this.model.fusion;
    const acts = this.acts;

    for (let l = 0; l < c.nLayers; l++) {
      const layer = w.layers[l];
      const fa = acts?.layers[l];

      // Attention block: the matmuls see all n rows; attention reads each row's own sequence.
      // Fused (Model.fusion): the normed rows go straight into the layout Q/K/V read.
      projectQKV(b, c, layer, fa, x, xb, q, k, v, n); // q [n, nHeads*headDim], k/v [n, nKvHeads*headDim]
      const keys = this.cache.keys[l]; // [numBlocks*blockSize, kvDim]
      const values = this.cache.values[l];
      if (fused?.ropeStore && b.ropeStoreKV) {
        b.ropeStoreKV(q, k, v, n, positions, this.rope, keys, values, slots.subarray(0, n));
      } else {
        b.rope(q, n, positions, this.rope.q);
        b.rope(k, n, positions, this.rope.k);
        this.store(keys, k, n);
        this.store(values, v, n);
      }
      b.pagedAttention(att, q, keys, values, positions, seqOfRow, tables, n, this.attn); // att [n, nHeads*headDim]
      b.matmul(xb, layer.wo, att, n); // xb [n, dim]
      b.add(x, x, xb, n * c.dim); // residual

      // Feed-forward block (SwiGLU).
      feedForward(b, c, layer, fa, x, xb, gate, up, n); // xb [n, dim]
      b.add(x, x, xb, n * c.dim); // residual
    }

    // Hidden states (embeddings): the output norm over each wanted sequence's rows.
    const hidden: Float32Array[] = [];
    let row = 0;
    let m = 0; // rows of `last`
    for (const seq of seqs) {
      const len = seq.tokens.length;
      if (seq.hidden) {
        const h = new Float32Array(len * c.dim);
        b.rmsNorm(h, x.subarray(row * c.dim, (row + len) * c.dim), w.outputNorm, len, c.dim, c.normEps);
        hidden.push(h);
      }
      if (seq.logits) last.set(x.subarray((row + len - 1) * c.dim, (row + len) * c.dim), m++ * c.dim);
      row += len;
    }

    // Final norm and classifier for the last row of each sequence that samples.
    if (m > 0 && acts?.output) {
      const a = acts.output;
      b.rmsNormQuantize?.(a, last, w.outputNorm, m, c.dim, c.normEps); // a [m, dim] quantized
      b.matmulQuantized?.(logits, w.output, a, m); // logits [m, vocab]
    } else if (m > 0) {
      b.rmsNorm(last, last, w.outputNorm, m, c.dim, c.normEps); // last [m, dim]
      b.matmul(logits, w.output, last, m); // logits [m, vocab]
    }
    return { logits: logits.subarray(0, m * c.vocabSize), hidden };
  }
}
