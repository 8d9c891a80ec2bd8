import { RyzansteinError } from "@ryzanstein/core-tensor";

/** Logits of every position of a fresh sequence, `[tokens.length, vocab]`. */
export type LogitsFunction = (tokens: number[]) => Float32Array;

/** Options of {@link perplexity}. */
export interface PerplexityOptions {
  /** Tokens per window (llama-perplexity's `--ctx-size`). */
  ctx: number;
  /** Vocabulary size (logit row length). */
  vocabSize: number;
  /** BOS id written over the first token of each window, as llama-perplexity does when the model adds BOS; null for none. */
  bosId: number | null;
  /** Called after each window with the fraction done. */
  onProgress?: (fraction: number) => void;
  /** Sees each scored logit row and the token it should predict. */
  onScored?: (row: Float32Array, target: number) => void;
}

/** Result of {@link perplexity}. */
export interface PerplexityResult {
  /** exp(mean negative log-likelihood). */
  perplexity: number;
  /** Mean negative log-likelihood in nats. */
  meanNll: number;
  /** Tokens scored. */
  tokensScored: number;
  /** Windows evaluated. */
  chunks: number;
}

/** −log softmax(row)[target], computed stably in float64. */
export function negativeLogLikelihood(row: Float32Array, target: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return max + Math.log(sum) - row[target];
}

/**
 * Perplexity the way llama-perplexity computes it: the token stream is cut into
 * `⌊tokens/ctx⌋` windows of `ctx` tokens, each evaluated as a fresh sequence (its first token
 * replaced by BOS when the model adds one), and only the second half of each window is scored
 * (positions ctx/2 … ctx−2 predicting the next token), so every scored token has at least ctx/2
 * tokens of context. Needs at least 2·ctx tokens, as llama-perplexity does.
 */
export function perplexity(
  logits: LogitsFunction,
  tokens: readonly number[],
  o: PerplexityOptions,
): PerplexityResult {
  const { ctx, vocabSize } = o;
  if (!Number.isInteger(ctx) || ctx < 4)
    throw new RyzansteinError("INVALID_ARGUMENT", `perplexity context must be an integer ≥ 4, got ${ctx}`);
  if (tokens.length < 2 * ctx) {
    throw new RyzansteinError(
      "INSUFFICIENT_DATA",
      `the text has ${tokens.length} tokens; perplexity with ctx ${ctx} needs at least ${2 * ctx}`,
    );
  }
  const chunks = Math.floor(tokens.length / ctx);
  const first = Math.floor(ctx / 2);
  let nll = 0;
  let count = 0;
  for (let c = 0; c < chunks; c++) {
    const window = tokens.slice(c * ctx, (c + 1) * ctx);
    if (o.bosId !== null) window[0] = o.bosId;
    const all = logits(window);
    for (let i = first; i < ctx - 1; i++) {
      const row = all.subarray(i * vocabSize, (i + 1) * vocabSize);
      const target = tokens[c * ctx + i + 1];
      nll += negativeLogLikelihood(row, target);
      o.onScored?.(row, target);
      count++;
    }
    o.onProgress?.((c + 1) / chunks);
  }
  return { perplexity: Math.exp(nll / count), meanNll: nll / count, tokensScored: count, chunks };
}
