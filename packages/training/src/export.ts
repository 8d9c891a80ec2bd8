/** Export of trained parameters as a llama-architecture GGUF that our engine and llama.cpp load. */
import { GGUFValueType, type GGUFWriteTensor, type GGUFWriteValue, writeGGUF } from "@ryzanstein/convert";
import { GGMLType, RyzansteinError, Tensor } from "@ryzanstein/core-tensor";
import { type ModelShape, normalizeShape, paramLayout } from "./model.js";

/** Storage formats for exported matrices (norm vectors stay F32). */
export type ExportType = "f32" | "f16" | "q8_0";

const TYPES: Record<ExportType, { type: GGMLType; fileType: number }> = {
  f32: { type: GGMLType.F32, fileType: 0 },
  f16: { type: GGMLType.F16, fileType: 1 },
  q8_0: { type: GGMLType.Q8_0, fileType: 7 },
};

/** Options of {@link exportGGUF}. */
export interface ExportOptions {
  /** Model shape. */
  shape: ModelShape;
  /** Flat parameters in {@link paramLayout} order. */
  params: Float32Array;
  /** `tokenizer.ggml.*` metadata (e.g. from `bpeMetadata`). */
  tokenizer: Record<string, unknown>;
  /** Matrix format (default f16). */
  type?: ExportType;
  /** `general.name`. */
  name?: string;
  /** Extra metadata (e.g. `general.license`). */
  metadata?: Record<string, GGUFWriteValue>;
}

/** Writes the model to `path` atomically. */
export function exportGGUF(path: string, o: ExportOptions): void {
  const s = normalizeShape(o.shape);
  const { specs, total } = paramLayout(s);
  if (o.params.length !== total) {
    throw new RyzansteinError("SHAPE_MISMATCH", `expected ${total} parameters, got ${o.params.length}`);
  }
  const fmt = TYPES[o.type ?? "f16"];
  if (!fmt)
    throw new RyzansteinError("INVALID_ARGUMENT", `unknown export type '${String(o.type)}' (f32, f16, q8_0)`);
  const tensors: GGUFWriteTensor[] = specs.map((p) => {
    const values = o.params.slice(p.offset, p.offset + p.size);
    const matrix = p.shape.length === 2 && !(fmt.type === GGMLType.Q8_0 && p.shape[1] % 32 !== 0);
    const type = matrix ? fmt.type : GGMLType.F32;
    return {
      name: p.name,
      type,
      shape: p.shape,
      data: () => Tensor.fromF32(p.shape, values, type).data,
    };
  });
  const hd = s.dim / s.nHeads;
  writeGGUF(path, {
    metadata: {
      "general.architecture": "llama",
      "general.name": o.name ?? "ryzanstein-trained",
      "general.file_type": fmt.fileType,
      ...(o.metadata ?? {}),
      "llama.context_length": s.contextLength,
      "llama.embedding_length": s.dim,
      "llama.block_count": s.nLayers,
      "llama.feed_forward_length": s.ffnDim,
      "llama.attention.head_count": s.nHeads,
      "llama.attention.head_count_kv": s.nKvHeads,
      "llama.rope.dimension_count": hd,
      "llama.rope.freq_base": { type: GGUFValueType.FLOAT32, value: s.ropeFreqBase },
      "llama.attention.layer_norm_rms_epsilon": { type: GGUFValueType.FLOAT32, value: s.normEps },
      "llama.vocab_size": s.vocabSize,
      ...(o.tokenizer as Record<string, GGUFWriteValue>),
    },
    tensors,
  });
}
