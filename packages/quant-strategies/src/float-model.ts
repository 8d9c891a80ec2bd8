import type { GGUFWriteValue, ModelSource } from "@ryzanstein/convert";
import { isComputeFormat, RyzansteinError, typeName } from "@ryzanstein/core-tensor";

/** One tensor of a model decoded to floats, row-major with `shape` outermost first. */
export interface FloatTensor {
  /** GGUF tensor name. */
  readonly name: string;
  /** Shape, outermost first (`[rows, cols]` for a matrix). */
  readonly shape: readonly number[];
  /** Format in the source file. */
  readonly sourceType: number;
  /** Values (the strategies may rewrite them, e.g. AWQ folding its scales into a norm). */
  values: Float32Array;
}

/** A whole model in floats: what strategies read and rewrite before encoding. */
export interface FloatModel {
  /** Metadata to write back, with exact GGUF value types. */
  readonly metadata: Record<string, GGUFWriteValue>;
  /** Tensors in file order. */
  readonly tensors: FloatTensor[];
  /** Tensors by name. */
  readonly byName: ReadonlyMap<string, FloatTensor>;
}

/**
 * Decodes every tensor of a model to F32. Throws UNSUPPORTED_TENSOR_TYPE (naming the tensor) when
 * a tensor is in a format that has no traits row to decode it.
 */
export function readFloatModel(source: ModelSource): FloatModel {
  const tensors = source.tensors.map((info): FloatTensor => {
    if (!isComputeFormat(info.type)) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `tensor ${info.name} is ${typeName(info.type)}, which cannot be decoded for re-quantization`,
        { file: source.file },
      );
    }
    return {
      name: info.name,
      shape: [...info.shape],
      sourceType: info.type,
      values: source.tensor(info.name).toF32(),
    };
  });
  return {
    metadata: { ...source.writableMetadata() },
    tensors,
    byName: new Map(tensors.map((t) => [t.name, t])),
  };
}

/** A copy whose tensor values can be rewritten without touching `model`. */
export function cloneFloatModel(model: FloatModel): FloatModel {
  const tensors = model.tensors.map((t) => ({ ...t, values: t.values.slice() }));
  return { metadata: { ...model.metadata }, tensors, byName: new Map(tensors.map((t) => [t.name, t])) };
}

/**
 * True for the weight matrices a strategy quantizes: 2-D `*.weight` tensors. Norms, biases and
 * RoPE factors are vectors and stay F32, as in llama-quantize.
 */
export function isQuantizable(t: FloatTensor): boolean {
  return t.shape.length === 2 && t.name.endsWith(".weight");
}
