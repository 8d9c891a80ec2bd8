import type { ModelSource } from "@ryzanstein/convert";
import { ModelSession } from "@ryzanstein/engine";
import { type PerplexityResult, perplexity } from "./perplexity.js";

/** Options of {@link QuantizationValidator}. */
export interface ValidatorOptions {
  /** Tokens per perplexity window (default 128). */
  ctx?: number;
  /** Native threads (default: all cores). */
  threads?: number;
}

/** How a quantized model compares with the reference on held-out text. */
export interface ValidationResult {
  /** Perplexity of the unquantized model. */
  referencePerplexity: number;
  /** Perplexity of the quantized model. */
  perplexity: number;
  /** Relative increase, perplexity / referencePerplexity − 1. */
  increase: number;
  /** Fraction of scored positions where both models' most likely token agrees. */
  top1Agreement: number;
  /** Tokens scored. */
  tokensScored: number;
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Opens a model source for in-process scoring (native backend, F32 KV cache). */
export function openScoringSession(source: ModelSource, ctx: number, threads?: number): ModelSession {
  return new ModelSession(source, { contextSize: ctx, batchSize: ctx, kvCache: "f32", threads });
}

/**
 * Scores quantized models against the unquantized one on held-out tokens: perplexity
 * (llama-perplexity's method) and top-1 agreement at every scored position. The reference is
 * evaluated once, in the constructor.
 */
export class QuantizationValidator {
  /** The reference model's perplexity. */
  readonly reference: PerplexityResult;
  private readonly referenceTop1: Int32Array;
  private readonly ctx: number;

  constructor(
    reference: ModelSource,
    private readonly tokens: readonly number[],
    private readonly options: ValidatorOptions = {},
  ) {
    this.ctx = options.ctx ?? 128;
    const top: number[] = [];
    const session = openScoringSession(reference, this.ctx, options.threads);
    try {
      this.reference = this.score(session, (row) => top.push(argmax(row)));
    } finally {
      session.dispose();
    }
    this.referenceTop1 = Int32Array.from(top);
  }

  private score(session: ModelSession, onRow: (row: Float32Array) => void): PerplexityResult {
    return perplexity((t) => session.logits(t), this.tokens, {
      ctx: this.ctx,
      vocabSize: session.config.vocabSize,
      bosId: session.tokenizer.addBos ? session.tokenizer.bosId : null,
      onScored: onRow,
    });
  }

  /** Scores `candidate` on the same windows. */
  validate(candidate: ModelSource): ValidationResult {
    let i = 0;
    let agree = 0;
    const session = openScoringSession(candidate, this.ctx, this.options.threads);
    let result: PerplexityResult;
    try {
      result = this.score(session, (row) => {
        if (argmax(row) === this.referenceTop1[i++]) agree++;
      });
    } finally {
      session.dispose();
    }
    return {
      referencePerplexity: this.reference.perplexity,
      perplexity: result.perplexity,
      increase: result.perplexity / this.reference.perplexity - 1,
      top1Agreement: agree / result.tokensScored,
      tokensScored: result.tokensScored,
    };
  }
}
