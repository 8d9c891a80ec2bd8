import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { RyzansteinError } from "@ryzanstein/core-tensor";

/** Environment variable naming the model to use when `--model` is absent. */
export const MODEL_ENV = "RYZANSTEIN_MODEL";

/**
 * The model path to use: `--model`, else `$RYZANSTEIN_MODEL`, else the default model package
 * (`@ryzanstein/default-model`) when it is installed.
 */
export function resolveModelPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = flag ?? env[MODEL_ENV];
  if (chosen) {
    if (!existsSync(chosen)) throw new RyzansteinError("MODEL_NOT_FOUND", `model file not found: ${chosen}`);
    return chosen;
  }
  try {
    const require = createRequire(import.meta.url);
    const pkg = require("@ryzanstein/default-model") as { modelPath?: string };
    if (pkg.modelPath && existsSync(pkg.modelPath)) return pkg.modelPath;
  } catch {
    // not installed: fall through to the message below
  }
  throw new RyzansteinError(
    "MODEL_NOT_FOUND",
    `no model given: pass --model PATH to a GGUF file, or set ${MODEL_ENV}=PATH (the default model package @ryzanstein/default-model is not installed)`,
  );
}
