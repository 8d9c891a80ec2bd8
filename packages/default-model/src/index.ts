/**
 * `@ryzanstein/default-model`: the model `ryzanstein run` uses when no `--model` is given — a
 * 4.5-million-parameter Llama-architecture model trained by `ryzanstein train` on the King James
 * Bible (public domain). See the package README for the model card and `scripts/train.sh` for the
 * recipe.
 *
 * @packageDocumentation
 */
import path from "node:path";
import { fileURLToPath } from "node:url";

/** File name of the shipped GGUF inside the package's `model/` directory. */
export const modelFile = "kjv-4m-q8_0.gguf";

/** Absolute path of the shipped GGUF (the module sits in `src/` or `dist/`, one level below the package root). */
export const modelPath: string = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "..",
  "model",
  modelFile,
);
