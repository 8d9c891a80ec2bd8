/** A frozen base model read from GGUF (any supported format), as F32 parameters for training. */
import { readGGUF } from "@ryzanstein/convert";
import { type GGMLType, RyzansteinError } from "@ryzanstein/core-tensor";
import { type ModelShape, paramLayout } from "@ryzanstein/training";

/** A base model ready for fine-tuning. */
export interface BaseModel {
  /** Source path. */
  path: string;
  /** Shape read from the metadata. */
  shape: ModelShape;
  /** Parameters in `paramLayout` order, dequantized to F32 (a tied output is copied). */
  params: Float32Array;
  /** Storage format of each tensor in the file. */
  types: Map<string, GGMLType>;
  /** Tokenizer metadata (`tokenizer.ggml.*`). */
  tokenizer: Record<string, unknown>;
}

/**
 * Reads a Llama GGUF as a frozen base. Quantized formats (Q8_0, Q4_0, F16, BF16) are decoded to
 * F32 once; the decoded values are exactly what our forward pass computes with.
 *
 * @throws RyzansteinError `UNSUPPORTED_ARCHITECTURE` for non-llama models.
 */
export function loadBase(path: string): BaseModel {
  const g = readGGUF(path);
  const arch = g.getString("general.architecture");
  if (arch !== "llama")
    throw new RyzansteinError("UNSUPPORTED_ARCHITECTURE", `LoRA needs a llama model, ${path} is '${arch}'`);
  const n = (k: string) => g.getNumber(`llama.${k}`);
  const dim = n("embedding_length");
  const nHeads = n("attention.head_count");
  const embd = g.tensor("token_embd.weight");
  const shape: ModelShape = {
    nLayers: n("block_count"),
    dim,
    nHeads,
    nKvHeads: g.getNumberOr("llama.attention.head_count_kv", nHeads),
    ffnDim: n("feed_forward_length"),
    vocabSize: embd.shape[0],
    contextLength: n("context_length"),
    normEps: g.getNumberOr("llama.attention.layer_norm_rms_epsilon", 1e-5),
    ropeFreqBase: g.getNumberOr("llama.rope.freq_base", 10000),
  };
  const { specs, total } = paramLayout(shape);
  const params = new Float32Array(total);
  const types = new Map<string, GGMLType>();
  for (const s of specs) {
    const name = s.name === "output.weight" && !g.info("output.weight") ? "token_embd.weight" : s.name;
    const t = g.tensor(name);
    if (t.size !== s.size)
      throw new RyzansteinError("SHAPE_MISMATCH", `${name}: ${t.size} values, expected ${s.size}`);
    params.set(t.toF32(), s.offset);
    types.set(s.name, t.type);
  }
  const tokenizer: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(g.metadata)) if (k.startsWith("tokenizer.")) tokenizer[k] = v;
  return { path, shape, params, types, tokenizer };
}
