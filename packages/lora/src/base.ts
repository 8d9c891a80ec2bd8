/**
 * A frozen base model read from GGUF, kept in its storage formats: the file is memory-mapped, F32,
 * F16 and BF16 matrices are read in place, Q8_0/Q4_0 matrices are repacked once into the layout the
 * fast matmul reads (their mapped pages released). Nothing is decoded to F32 as a whole (QLoRA).
 */
import { parseGGUF } from "@ryzanstein/convert";
import { type GGMLType, RyzansteinError, type Tensor } from "@ryzanstein/core-tensor";
import { mapFile, NativeTrainKernels } from "@ryzanstein/kernels-native";
import { type FrozenMatrix, type FrozenModel, type ModelShape, paramLayout } from "@ryzanstein/training";

/** A base model ready for fine-tuning. */
export interface BaseModel {
  /** Source path. */
  path: string;
  /** Shape read from the metadata. */
  shape: ModelShape;
  /** The weights in their storage formats (norm vectors as F32). */
  weights: FrozenModel;
  /** Storage format of each tensor in the file. */
  types: Map<string, GGMLType>;
  /** Bytes the base weights occupy in memory (repacked copies and in-place views). */
  weightBytes: number;
  /** Tokenizer metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`). */
  tokenizer: Record<string, unknown>;
}

/** Options of {@link loadBase}. */
export interface LoadBaseOptions {
  /** Repack Q8_0/Q4_0 matrices for the fast matmul (default true; false reads the mapped file layout). */
  repack?: boolean;
}

/**
 * Reads a Llama GGUF as a frozen base (see the module comment).
 *
 * @throws RyzansteinError `UNSUPPORTED_ARCHITECTURE` for non-llama models, `SHAPE_MISMATCH` for
 *   tensors of the wrong size, `IO_ERROR` when the file cannot be read.
 */
export function loadBase(path: string, options: LoadBaseOptions = {}): BaseModel {
  const g = parseGGUF(mapFile(path), { file: path });
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
  const repack = options.repack ?? true;
  const tied = !g.info("output.weight");
  const matrices = new Map<string, FrozenMatrix>();
  const norms = new Map<string, Float32Array>();
  const types = new Map<string, GGMLType>();
  let weightBytes = 0;
  for (const s of paramLayout(shape).specs) {
    const name = s.name === "output.weight" && tied ? "token_embd.weight" : s.name;
    const t: Tensor = g.tensor(name);
    if (t.size !== s.size)
      throw new RyzansteinError("SHAPE_MISMATCH", `${name}: ${t.size} values, expected ${s.size}`);
    types.set(s.name, t.type);
    if (s.isNorm) {
      norms.set(s.name, t.toF32());
      weightBytes += s.size * 4;
      continue;
    }
    const [rows, cols] = s.shape;
    const inPlace = { type: t.type, rows, cols, data: t.data, packed: false };
    // The embedding is read by row (file layout); a tied output gets its own repacked copy, so its
    // mapped pages stay (they are the embedding's).
    const native =
      repack && s.name !== "token_embd.weight"
        ? NativeTrainKernels.repack(inPlace, !(tied && s.name === "output.weight"))
        : inPlace;
    weightBytes += native.data.byteLength;
    matrices.set(s.name, { tensor: t, native });
  }
  const tokenizer: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(g.metadata)) if (k.startsWith("tokenizer.")) tokenizer[k] = v;
  return { path, shape, weights: { matrices, norms }, types, weightBytes, tokenizer };
}
