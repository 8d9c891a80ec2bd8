import {
  detectFormat,
  GGUFFile,
  openGGUFLazy,
  openHFModel,
  writeModelAsGGUF,
  writeModelAsHF,
} from "@ryzanstein/convert";
import type { ComputeFormat } from "@ryzanstein/core-tensor";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { fitFormat } from "@ryzanstein/quant-strategies";
import { typeOption } from "../options.js";
import { progressBar } from "../progress.js";

/** Options of `ryzanstein convert`. */
export interface ConvertOptions {
  type?: string;
  to: "gguf" | "hf";
}

/**
 * `ryzanstein convert IN OUT`: a HuggingFace folder (or GGUF) to GGUF, optionally re-encoding the
 * matrices (`--type`), or a GGUF to a HuggingFace folder (`--to hf`).
 */
export function convertCommand(
  input: string,
  output: string,
  o: ConvertOptions,
  log: NodeJS.WritableStream = process.stderr,
): void {
  // Round-to-nearest with each format's reference quantizer (quant-strategies' rtn), streamed.
  const type: ComputeFormat | undefined = o.type === undefined ? undefined : typeOption(o.type);
  // Read lazily, one tensor at a time, so memory stays near the largest tensor.
  const source = detectFormat(input) === "hf-folder" ? openHFModel(input) : openGGUFLazy(input);
  const bar = progressBar("converting");
  try {
    if (o.to === "hf") {
      if (!(source instanceof GGUFFile))
        throw new RyzansteinError("INVALID_ARGUMENT", "--to hf takes a GGUF file as input");
      if (type !== undefined)
        throw new RyzansteinError("INVALID_ARGUMENT", "--type applies to GGUF output only");
      writeModelAsHF(source, output, (p) => bar.update(p.tensorsDone / p.tensorsTotal));
      bar.stop();
      log.write(`wrote ${output} (${source.tensors.length} tensors)\n`);
      return;
    }
    const { fallbacks } = writeModelAsGGUF(source, output, {
      type,
      fallback: fitFormat,
      onProgress: (p) => bar.update(p.tensorsDone / p.tensorsTotal),
    });
    bar.stop();
    for (const f of fallbacks)
      log.write(`note: ${f.name} written as ${f.written} (rows do not fit ${f.requested} blocks)\n`);
    log.write(`wrote ${output} (${source.tensors.length} tensors)\n`);
  } finally {
    bar.stop();
  }
}
