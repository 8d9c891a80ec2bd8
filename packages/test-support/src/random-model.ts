import { GGUFValueType, type GGUFWriteTensor, writeGGUF } from "@ryzanstein/convert";
import { type ComputeFormat, GGMLType, llamaFileType, Tensor } from "@ryzanstein/core-tensor";

/** Shape and storage of a random-weight Llama model. */
export interface RandomLlamaSpec {
  /** Transformer blocks. */
  nLayers: number;
  /** Residual width. */
  dim: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads. */
  nKvHeads: number;
  /** Feed-forward width. */
  ffnDim: number;
  /** Vocabulary size (≥ 259: 3 specials and 256 byte tokens come first). */
  vocabSize: number;
  /** Storage format of the matrices (norms stay F32). */
  type: ComputeFormat;
  /** Context length written to the metadata (default 2048). */
  contextLength?: number;
  /** Standard deviation of the weights (default 0.08, which gives clear top-1 margins on small models). */
  std?: number;
  /** Standard deviation of `output.weight` (default 4/√dim: logits of spread ~4, so top-1 margins are clear). */
  outputStd?: number;
  /** Standard deviation of `token_embd.weight` (default: `std`, or the output scale when tied). */
  embeddingStd?: number;
  /** Seed of the generator (default 1). */
  seed?: number;
  /** Share the embedding table with the output projection (no `output.weight`). Default false. */
  tiedOutput?: boolean;
  /** RoPE base (default 10000). */
  ropeFreqBase?: number;
  /** Model name in `general.name`. */
  name?: string;
  /**
   * Fast quantizer for a matrix (e.g. kernels-native's `NativeBackend.quantize`); `undefined` from
   * it, or no hook, falls back to core-tensor's reference quantizer (slow for K-quants at 1B scale).
   */
  quantize?: (type: GGMLType, values: Float32Array, rows: number, cols: number) => Uint8Array | undefined;
}

/** Seeded normal generator (xorshift + Box-Muller). */
export function gaussian(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/**
 * A SentencePiece-style vocabulary of `size` tokens that llama.cpp accepts: `<unk>`, `<s>`, `</s>`,
 * 256 byte tokens, then letters and `▁`-prefixed pieces with descending scores.
 */
export function syntheticLlamaVocab(size: number): {
  tokens: string[];
  scores: Float32Array;
  types: Int32Array;
} {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'";
  const pieces: string[] = ["▁"];
  for (const c of letters) pieces.push(c, `▁${c}`);
  outer: for (const a of "abcdefghijklmnopqrstuvwxyz") {
    for (const b of "abcdefghijklmnopqrstuvwxyz") {
      pieces.push(`${a}${b}`, `▁${a}${b}`);
      if (tokens.length + pieces.length >= size) break outer;
    }
  }
  for (let i = 0; tokens.length + pieces.length < size; i++) pieces.push(`▁w${i}`);
  for (const p of pieces.slice(0, size - tokens.length)) {
    tokens.push(p);
    types.push(1);
  }
  const scores = new Float32Array(size);
  for (let i = 259; i < size; i++) scores[i] = -(i - 259);
  return { tokens, scores, types: Int32Array.from(types) };
}

/**
 * Writes a Llama GGUF with random weights, streaming one tensor at a time so multi-gigabyte
 * shapes fit in memory. The metadata is what llama.cpp needs to load it.
 */
export function writeRandomLlamaGGUF(
  path: string,
  spec: RandomLlamaSpec,
  onProgress?: (fraction: number) => void,
): void {
  const { nLayers, dim, nHeads, nKvHeads, ffnDim, vocabSize, type } = spec;
  const headDim = dim / nHeads;
  const std = spec.std ?? 0.08;
  const seed = spec.seed ?? 1;
  const vocab = syntheticLlamaVocab(vocabSize);
  let tensorSeed = seed * 7919;
  const matrix = (
    name: string,
    rows: number,
    cols: number,
    scale = std,
    format: GGMLType = type,
  ): GGUFWriteTensor => {
    const s = tensorSeed++;
    return {
      name,
      type: format,
      shape: [rows, cols],
      data: () => {
        const rand = gaussian(s);
        const values = new Float32Array(rows * cols);
        for (let i = 0; i < values.length; i++) values[i] = rand() * scale;
        return (
          spec.quantize?.(format, values, rows, cols) ?? Tensor.fromF32([rows, cols], values, format).data
        );
      },
    };
  };
  const norm = (name: string): GGUFWriteTensor => {
    const s = tensorSeed++;
    return {
      name,
      type: GGMLType.F32,
      shape: [dim],
      data: () => {
        const rand = gaussian(s);
        const values = new Float32Array(dim);
        for (let i = 0; i < dim; i++) values[i] = 1 + 0.1 * rand();
        return new Uint8Array(values.buffer);
      },
    };
  };
  const outputStd = spec.outputStd ?? 4 / Math.sqrt(dim);
  const embeddingStd = spec.embeddingStd ?? (spec.tiedOutput ? outputStd : std);
  const tensors: GGUFWriteTensor[] = [matrix("token_embd.weight", vocabSize, dim, embeddingStd)];
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      norm(`${p}attn_norm.weight`),
      matrix(`${p}attn_q.weight`, nHeads * headDim, dim),
      matrix(`${p}attn_k.weight`, nKvHeads * headDim, dim),
      matrix(`${p}attn_v.weight`, nKvHeads * headDim, dim),
      matrix(`${p}attn_output.weight`, dim, nHeads * headDim),
      norm(`${p}ffn_norm.weight`),
      matrix(`${p}ffn_gate.weight`, ffnDim, dim),
      matrix(`${p}ffn_up.weight`, ffnDim, dim),
      matrix(`${p}ffn_down.weight`, dim, ffnDim),
    );
  }
  tensors.push(norm("output_norm.weight"));
  if (!spec.tiedOutput) tensors.push(matrix("output.weight", vocabSize, dim, outputStd));
  const fileType = llamaFileType(type);
  if (fileType === undefined) throw new Error(`${GGMLType[type]} cannot be a weight format`);
  writeGGUF(
    path,
    {
      metadata: {
        "general.architecture": "llama",
        "general.name": spec.name ?? "random-llama",
        "general.file_type": fileType,
        "llama.context_length": spec.contextLength ?? 2048,
        "llama.embedding_length": dim,
        "llama.block_count": nLayers,
        "llama.feed_forward_length": ffnDim,
        "llama.attention.head_count": nHeads,
        "llama.attention.head_count_kv": nKvHeads,
        "llama.rope.dimension_count": headDim,
        "llama.rope.freq_base": { type: GGUFValueType.FLOAT32, value: spec.ropeFreqBase ?? 10000 },
        "llama.attention.layer_norm_rms_epsilon": { type: GGUFValueType.FLOAT32, value: 1e-5 },
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": vocab.tokens,
        "tokenizer.ggml.scores": vocab.scores,
        "tokenizer.ggml.token_type": vocab.types,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": true,
      },
      tensors,
    },
    onProgress ? (p) => onProgress(p.bytesDone / p.bytesTotal) : undefined,
  );
}
