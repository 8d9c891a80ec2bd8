import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { Context, Model } from "./model.js";
import { Sampler, type SamplingOptions, type TokenLogprob, topLogprobs } from "./sampler.js";

/** What generation needs from a tokenizer. */
export interface GenerationTokenizer {
  /** True for tokens that end generation (EOS, EOT, ...). */
  isEog(id: number): boolean;
  /** The bytes a token stands for when it follows other text. */
  tokenToPiece(id: number): Uint8Array;
}

/** Options of one generation. */
export interface GenerateOptions extends SamplingOptions {
  /** Stop after this many generated tokens. Default: until the context is full. */
  maxTokens?: number;
  /** Stop when the text contains one of these; the stop string is not returned. */
  stop?: string[];
  /** Return the chosen token's log-probability and this many alternatives per token (0: none). */
  topLogprobs?: number;
  /** Also return the chosen token's log-probability when `topLogprobs` is 0. */
  logprobs?: boolean;
  /** Keep generating after end-of-generation tokens (benchmarks). Default false. */
  ignoreEos?: boolean;
}

/** One generated token. */
export interface GeneratedToken {
  /** Token id. */
  token: number;
  /** Text this token completes (empty while a UTF-8 sequence or a possible stop string is pending). */
  text: string;
  /** ln p(token) at temperature 1 before filters, when requested. */
  logprob?: number;
  /** The most likely tokens at this step, when requested. */
  top?: TokenLogprob[];
}

/** Why generation ended. */
export type FinishReason = "stop" | "eos" | "length" | "aborted";

/** Summary returned when a generation ends. */
export interface GenerationResult {
  /** Why it ended. */
  finishReason: FinishReason;
  /** Prompt tokens processed. */
  promptTokens: number;
  /** Tokens generated (including an end-of-generation token, which is not returned as text). */
  completionTokens: number;
  /** Trailing text released at the end (held back while it might have begun a stop string). */
  text: string;
}

/** Longest suffix of `text` that is a proper prefix of some stop string. */
function pendingStopPrefix(text: string, stops: string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let len = Math.min(s.length - 1, text.length); len > best; len--) {
      if (text.endsWith(s.slice(0, len))) {
        best = len;
        break;
      }
    }
  }
  return best;
}

/**
 * The generation loop, synchronous: prefill the prompt, then sample, check stop conditions and
 * decode one token at a time. `isAborted` is polled between tokens. Runs inside the engine's
 * worker, or in-process for tests.
 */
export function* generateTokens(
  model: Model,
  ctx: Context,
  tokenizer: GenerationTokenizer,
  prompt: number[],
  options: GenerateOptions = {},
  isAborted: () => boolean = () => false,
): Generator<GeneratedToken, GenerationResult> {
  if (prompt.length === 0)
    throw new RyzansteinError("INVALID_ARGUMENT", "the prompt has no tokens (add BOS or text)");
  if (prompt.length >= ctx.size - ctx.length) {
    throw new RyzansteinError(
      "CONTEXT_OVERFLOW",
      `the prompt has ${prompt.length} tokens; the context holds ${ctx.size - ctx.length} more`,
    );
  }
  const maxTokens = options.maxTokens ?? Number.POSITIVE_INFINITY;
  if (!(maxTokens >= 0)) throw new RyzansteinError("INVALID_ARGUMENT", "maxTokens must be ≥ 0");
  const stops = (options.stop ?? []).filter((s) => s.length > 0);
  const wantTop = options.topLogprobs ?? 0;
  const wantLogprob = options.logprobs || wantTop > 0;
  const sampler = new Sampler(options);
  for (const t of prompt) sampler.accept(t);
  const decoder = new TextDecoder("utf-8", { fatal: false });

  let logits = model.forward(ctx, prompt);
  let generated = 0;
  let pending = ""; // decoded text not yet released
  const result = (finishReason: FinishReason, text: string): GenerationResult => ({
    finishReason,
    promptTokens: prompt.length,
    completionTokens: generated,
    text,
  });

  for (;;) {
    if (generated >= maxTokens) return result("length", pending + decoder.decode());
    if (isAborted()) return result("aborted", pending + decoder.decode());
    const token = sampler.sample(logits);
    generated++;
    const lp = wantLogprob ? topLogprobs(logits, wantTop, token) : undefined;
    if (!options.ignoreEos && tokenizer.isEog(token)) return result("eos", pending + decoder.decode());

    pending += decoder.decode(tokenizer.tokenToPiece(token), { stream: true });
    let text = pending;
    let stopped = false;
    if (stops.length) {
      const hit = stops.map((s) => pending.indexOf(s)).filter((i) => i >= 0);
      if (hit.length) {
        text = pending.slice(0, Math.min(...hit));
        stopped = true;
      } else {
        text = pending.slice(0, pending.length - pendingStopPrefix(pending, stops));
      }
    }
    pending = pending.slice(text.length);
    yield { token, text, ...(lp ? { logprob: lp.chosen, top: wantTop > 0 ? lp.top : undefined } : {}) };
    if (stopped) return result("stop", "");
    if (ctx.length >= ctx.size) return result("length", pending + decoder.decode());
    logits = model.forward(ctx, [token]);
  }
}
