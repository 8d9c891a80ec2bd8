import { existsSync, readFileSync } from "node:fs";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { ModelSession, openModelFile } from "@ryzanstein/engine";
import { openScoringSession, perplexity } from "@ryzanstein/quant-strategies";
import { progressBar } from "../progress.js";
import { resolveModelPath } from "../resolve-model.js";

/** Options of `ryzanstein perplexity`. */
export interface PerplexityCommandOptions {
  model?: string;
  file: string;
  ctx: number;
  threads?: number;
  json?: boolean;
  backend?: "native" | "reference";
}

/** `ryzanstein perplexity --file TEXT`: llama-perplexity's measurement (windows of ctx, second half scored). */
export function perplexityCommand(
  o: PerplexityCommandOptions,
  out: NodeJS.WritableStream = process.stdout,
): void {
  if (!existsSync(o.file)) throw new RyzansteinError("INVALID_ARGUMENT", `text file not found: ${o.file}`);
  const source = openModelFile(resolveModelPath(o.model));
  const session =
    o.backend === "reference"
      ? new ModelSession(source, {
          backend: "reference",
          contextSize: o.ctx,
          batchSize: o.ctx,
          kvCache: "f32",
        })
      : openScoringSession(source, o.ctx, o.threads);
  const bar = progressBar("perplexity");
  try {
    const tokens = session.tokenizer.encode(readFileSync(o.file, "utf8"));
    const r = perplexity((t) => session.logits(t), tokens, {
      ctx: o.ctx,
      vocabSize: session.config.vocabSize,
      bosId: session.tokenizer.addBos ? session.tokenizer.bosId : null,
      onProgress: (f) => bar.update(f),
    });
    bar.stop();
    if (o.json) out.write(`${JSON.stringify({ ...r, ctx: o.ctx })}\n`);
    else
      out.write(
        `perplexity ${r.perplexity.toFixed(4)} (mean NLL ${r.meanNll.toFixed(4)} nats, ${r.tokensScored} tokens scored in ${r.chunks} windows of ${o.ctx})\n`,
      );
  } finally {
    bar.stop();
    session.dispose();
  }
}
