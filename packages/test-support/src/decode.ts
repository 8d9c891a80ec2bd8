/** Natural log-softmax of one row of logits, in float64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const logZ = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - logZ);
}

/** One sequence's part of a batched step, as the engine's `BatchRunner.forward` takes it. */
export interface BatchedStepSequence {
  /** Tokens to run. */
  tokens: number[];
  /** Position of the first. */
  start: number;
  /** The sequence's KV block table. */
  blockTable: number[];
  /** Return logits of the last row. */
  logits: boolean;
}

/** Tokens and chosen-token log-probabilities of a batched greedy run, per sequence. */
export interface BatchedTrace {
  /** The argmax at each step (also under teacher forcing). */
  tokens: number[][];
  /** ln p of the token fed next (the argmax, or the forced token). */
  logps: number[][];
}

/**
 * Greedy decoding of `prompts` for `steps` tokens through a batched forward pass (every sequence
 * in every step: the whole prompt first, then one row each), sequence `s` reading its KV cache
 * through `tables[s]`. With `forced`, token `forced[s][step]` is fed instead of the argmax
 * (teacher forcing), so log-probabilities of two configurations compare along one path.
 */
export function greedyBatched(
  forward: (seqs: BatchedStepSequence[]) => { logits: Float32Array },
  vocab: number,
  prompts: number[][],
  tables: number[][],
  steps: number,
  forced?: number[][],
): BatchedTrace {
  const trace: BatchedTrace = { tokens: prompts.map(() => []), logps: prompts.map(() => []) };
  let next = prompts;
  let starts = prompts.map(() => 0);
  for (let step = 0; step < steps; step++) {
    const out = forward(
      prompts.map((_, s) => ({ tokens: next[s], start: starts[s], blockTable: tables[s], logits: true })),
    );
    starts = starts.map((st, s) => st + next[s].length);
    next = prompts.map((_, s) => {
      const lp = logSoftmax(out.logits.subarray(s * vocab, (s + 1) * vocab));
      let best = 0;
      for (let i = 1; i < vocab; i++) if (lp[i] > lp[best]) best = i;
      const t = forced ? forced[s][step] : best;
      trace.tokens[s].push(best);
      trace.logps[s].push(lp[t]);
      return [t];
    });
  }
  return trace;
}
