import { type GeneratedToken, type KVCacheType, loadModel } from "@ryzanstein/engine";
import type { Isa } from "@ryzanstein/kernels-native";
import { progressBar } from "../progress.js";
import { resolveModelPath } from "../resolve-model.js";
import { readAdapter } from "./finetune.js";

/** Options of `ryzanstein run`. */
export interface RunOptions {
  model?: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  seed?: number;
  threads?: number;
  ctx?: number;
  json?: boolean;
  topLogprobs: number;
  stop?: string[];
  isa?: Isa;
  backend?: "native" | "reference";
  /** LoRA adapter (GGUF file or PEFT directory) applied beside the model's weights (not merged). */
  lora?: string;
  /** KV cache element type (default f16). */
  kvType?: KVCacheType;
}

/** `ryzanstein run [PROMPT]`: streams a completion of PROMPT to stdout, or prints one JSON object. */
export async function runCommand(
  prompt: string,
  o: RunOptions,
  out: NodeJS.WritableStream = process.stdout,
): Promise<void> {
  const path = resolveModelPath(o.model);
  const lora = o.lora ? readAdapter(path, o.lora) : undefined;
  const bar = progressBar("loading");
  const model = await loadModel(path, {
    lora,
    threads: o.threads,
    isa: o.isa,
    contextSize: o.ctx,
    kvCache: o.kvType,
    backend: o.backend,
    onProgress: (p) => bar.update(p.fraction),
  });
  bar.stop();
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once("SIGINT", onSigint);
  try {
    const generation = model.generate(prompt, {
      maxTokens: o.maxTokens < 0 ? undefined : o.maxTokens,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      minP: o.minP,
      repeatPenalty: o.repeatPenalty,
      seed: o.seed,
      stop: o.stop,
      logprobs: o.json,
      topLogprobs: o.json ? o.topLogprobs : 0,
      signal: controller.signal,
    });
    if (o.json) {
      const tokens: GeneratedToken[] = [];
      let text = "";
      for await (const t of generation) {
        tokens.push(t);
        text += t.text;
      }
      const result = await generation.result;
      const json = {
        prompt_tokens: generation.promptTokens,
        tokens: tokens.map((t) => t.token),
        text: text + result.text,
        finish_reason: result.finishReason,
        logprobs: tokens.map((t) => ({ token: t.token, logprob: t.logprob, top: t.top ?? [] })),
      };
      out.write(`${JSON.stringify(json)}\n`);
      return;
    }
    out.write(prompt);
    for await (const t of generation) out.write(t.text);
    const result = await generation.result;
    out.write(`${result.text}\n`);
  } finally {
    process.off("SIGINT", onSigint);
    await model.dispose();
  }
}
