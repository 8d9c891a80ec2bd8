// Our side: the engine's Model on a NativeBackend, timed the way peer.ts times llama.cpp.
import { type Context, Model, openModelFile, readLlamaWeights, readModelConfig } from "@ryzanstein/engine";
import { NativeBackend } from "@ryzanstein/kernels-native";

/** A loaded model with one context and its backend. */
export interface OurSession {
  model: Model;
  ctx: Context;
  backend: NativeBackend;
}

/** Loads `path` with `threads` native threads (weights repacked unless `repack` is false). */
export function openOurs(path: string, threads: number, contextSize: number, repack = true): OurSession {
  const gguf = openModelFile(path);
  const config = readModelConfig(gguf);
  const backend = new NativeBackend({ threads, repack });
  const model = new Model(config, readLlamaWeights(gguf, config), backend);
  return { model, ctx: model.createContext(contextSize, 512), backend };
}

/** Seconds to process `tokens` into an empty context (pp). */
export function oursPrompt(s: OurSession, tokens: number[]): number {
  s.ctx.truncate(0);
  const t0 = performance.now();
  s.model.forward(s.ctx, tokens);
  return (performance.now() - t0) / 1000;
}

/** Seconds to generate `n` tokens greedily one at a time from `start` (tg; argmax included). */
export function oursGenerate(s: OurSession, start: number, n: number): number {
  s.ctx.truncate(0);
  const one = [start];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const logits = s.model.forward(s.ctx, one);
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
    one[0] = best;
  }
  return (performance.now() - t0) / 1000;
}
