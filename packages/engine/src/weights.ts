import type { ModelSource } from "@ryzanstein/convert";
import { isComputeFormat, RyzansteinError, Tensor, typeName } from "@ryzanstein/core-tensor";
import type { ModelConfig } from "./config.js";

/** Weights of one transformer block. Matrices stay in their file format and memory. */
export interface LayerWeights {
  /** RMSNorm weight before attention, `[dim]`. */
  attnNorm: Float32Array;
  /** Query projection `[nHeads*headDim, dim]`. */
  wq: Tensor;
  /** Key projection `[nKvHeads*headDim, dim]`. */
  wk: Tensor;
  /** Value projection `[nKvHeads*headDim, dim]`. */
  wv: Tensor;
  /** Attention output projection `[dim, nHeads*headDim]`. */
  wo: Tensor;
  /** Biases of the Q, K and V projections (Qwen2), when the model has them. */
  bq?: Float32Array;
  /** K projection bias. */
  bk?: Float32Array;
  /** V projection bias. */
  bv?: Float32Array;
  /** RMSNorm weight before the feed-forward block, `[dim]`. */
  ffnNorm: Float32Array;
  /** RMSNorm on the attention output before the residual add (Gemma 2). */
  postAttnNorm?: Float32Array;
  /** RMSNorm on the feed-forward output before the residual add (Gemma 2). */
  postFfnNorm?: Float32Array;
  /** Gate projection `[ffnDim, dim]`. */
  wGate: Tensor;
  /** Up projection `[ffnDim, dim]`. */
  wUp: Tensor;
  /** Down projection `[dim, ffnDim]`. */
  wDown: Tensor;
}

/** All weights of a Llama-family model. */
export interface ModelWeights {
  /** Token embedding table `[vocab, dim]`. */
  tokenEmbd: Tensor;
  /** Transformer blocks. */
  layers: LayerWeights[];
  /** Final RMSNorm weight `[dim]`. */
  outputNorm: Float32Array;
  /** Output projection `[vocab, dim]` (the embedding table when tied). */
  output: Tensor;
  /** Divisors of the RoPE frequencies (`rope_freqs.weight`, Llama 3.1 scaling), `[ropeDims/2]`. */
  ropeFreqs?: Float32Array;
}

/** Rows `[start, start + count)` of a matrix, as a zero-copy tensor. */
function rowView(t: Tensor, start: number, count: number): Tensor {
  const rb = t.rowBytes;
  return new Tensor(
    t.type,
    [count, t.cols],
    t.data.subarray(start * rb, (start + count) * rb),
    `${t.name}[${start}:${start + count}]`,
  );
}

/** Reads the weights of a Llama-family model from GGUF, checking every shape against the config. */
export function readLlamaWeights(gguf: ModelSource, c: ModelConfig): ModelWeights {
  const matrix = (name: string, rows: number, cols: number): Tensor => {
    const t = gguf.tensor(name);
    if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `tensor ${name} has shape [${t.shape}], expected [${rows}, ${cols}]`,
        {
          file: gguf.file,
        },
      );
    }
    if (!isComputeFormat(t.type)) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `tensor ${name} is ${typeName(t.type)}, which the engine cannot compute with yet`,
        {
          file: gguf.file,
        },
      );
    }
    return t;
  };
  const vector = (name: string, len: number): Float32Array => {
    const t = gguf.tensor(name);
    if (t.size !== len) {
      throw new RyzansteinError("SHAPE_MISMATCH", `tensor ${name} has ${t.size} elements, expected ${len}`, {
        file: gguf.file,
      });
    }
    if (!isComputeFormat(t.type)) {
      throw new RyzansteinError("UNSUPPORTED_TENSOR_TYPE", `tensor ${name} is ${typeName(t.type)}`, {
        file: gguf.file,
      });
    }
    return t.toF32();
  };
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const tokenEmbd = matrix("token_embd.weight", c.vocabSize, c.dim);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `blk.${l}.`;
    // Phi-3 keeps Q/K/V in one matrix and gate/up in another: split them into row views.
    const qkv = gguf.has(`${p}attn_qkv.weight`)
      ? matrix(`${p}attn_qkv.weight`, qDim + 2 * kvDim, c.dim)
      : undefined;
    const gateUp = qkv ? matrix(`${p}ffn_up.weight`, 2 * c.ffnDim, c.dim) : undefined;
    layers.push({
      attnNorm: vector(`${p}attn_norm.weight`, c.dim),
      wq: qkv ? rowView(qkv, 0, qDim) : matrix(`${p}attn_q.weight`, qDim, c.dim),
      wk: qkv ? rowView(qkv, qDim, kvDim) : matrix(`${p}attn_k.weight`, kvDim, c.dim),
      wv: qkv ? rowView(qkv, qDim + kvDim, kvDim) : matrix(`${p}attn_v.weight`, kvDim, c.dim),
      wo: matrix(`${p}attn_output.weight`, c.dim, qDim),
      ...(gguf.has(`${p}attn_q.bias`)
        ? {
            bq: vector(`${p}attn_q.bias`, qDim),
            bk: vector(`${p}attn_k.bias`, kvDim),
            bv: vector(`${p}attn_v.bias`, kvDim),
          }
        : {}),
      ffnNorm: vector(`${p}ffn_norm.weight`, c.dim),
      ...(gguf.has(`${p}post_attention_norm.weight`)
        ? {
            postAttnNorm: vector(`${p}post_attention_norm.weight`, c.dim),
            postFfnNorm: vector(`${p}post_ffw_norm.weight`, c.dim),
          }
        : {}),
      wGate: gateUp ? rowView(gateUp, 0, c.ffnDim) : matrix(`${p}ffn_gate.weight`, c.ffnDim, c.dim),
      wUp: gateUp ? rowView(gateUp, c.ffnDim, c.ffnDim) : matrix(`${p}ffn_up.weight`, c.ffnDim, c.dim),
      wDown: matrix(`${p}ffn_down.weight`, c.dim, c.ffnDim),
    });
  }
  return {
    tokenEmbd,
    layers,
    outputNorm: vector("output_norm.weight", c.dim),
    output: gguf.has("output.weight") ? matrix("output.weight", c.vocabSize, c.dim) : tokenEmbd,
    ...(gguf.has("rope_freqs.weight") ? { ropeFreqs: vector("rope_freqs.weight", c.ropeDims / 2) } : {}),
  };
}
