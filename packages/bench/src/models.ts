// Random-weight Llama GGUFs at real shapes, written once into a cache directory by our writer.
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { type ComputeFormat, GGMLType } from "@ryzanstein/core-tensor";
import { NativeBackend } from "@ryzanstein/kernels-native";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";

/** A model shape (Llama architecture). */
export interface Shape {
  nLayers: number;
  dim: number;
  nHeads: number;
  nKvHeads: number;
  ffnDim: number;
  vocabSize: number;
}

/** The two shapes of the issue: ~110M (llama2.c-style) and TinyLlama-1.1B. */
export const SHAPES: Record<string, Shape> = {
  "110m": { nLayers: 12, dim: 768, nHeads: 12, nKvHeads: 12, ffnDim: 2048, vocabSize: 32000 },
  tinyllama: { nLayers: 22, dim: 2048, nHeads: 32, nKvHeads: 4, ffnDim: 5632, vocabSize: 32000 },
};

/** Formats the bench knows (all matrices, embeddings and output included, in the one format). */
export const FORMATS: Record<string, ComputeFormat | undefined> = {
  f16: GGMLType.F16,
  q8_0: GGMLType.Q8_0,
  q4_0: GGMLType.Q4_0,
  q4_k: GGMLType.Q4_K,
  tq2_0: GGMLType.TQ2_0,
  tq1_0: GGMLType.TQ1_0,
};

/** Path of the cached file for a shape and format, writing it first when missing. */
export function ensureModel(
  dir: string,
  shape: string,
  format: string,
  log: (m: string) => void,
): string | undefined {
  const type = FORMATS[format];
  const spec = SHAPES[shape];
  if (type === undefined || spec === undefined) return undefined;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${shape}-${format}.gguf`);
  if (existsSync(path)) return path;
  log(`writing ${path} (random weights) ...`);
  const tmp = `${path}.tmp`;
  let last = -1;
  // Weights of std 1/√dim keep each layer's gain near 1, as in trained models: with the small-model
  // default (0.08) these depths are chaotic and one rounding difference changes the greedy path.
  // K-quants go through the native port of ggml's quantizer (same bytes, ~30x faster).
  const native = new NativeBackend();
  try {
    writeRandomLlamaGGUF(
      tmp,
      {
        ...spec,
        type,
        std: 1 / Math.sqrt(spec.dim),
        name: `random-${shape}`,
        quantize: (t, values, rows, cols) => native.quantize(t, values, rows, cols),
      },
      (f) => {
        const pct = Math.floor(f * 10);
        if (pct !== last) {
          last = pct;
          log(`  ${pct * 10}%`);
        }
      },
    );
  } finally {
    native.dispose();
  }
  renameSync(tmp, path);
  return path;
}
