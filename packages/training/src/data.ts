/** Training data: token streams cut into packed fixed-length windows, split and shuffled by seed. */
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { seededRandom } from "./model.js";

/** Windows of `seq + 1` tokens (inputs and shifted targets) over a token stream. */
export interface WindowSet {
  /** The stream. */
  tokens: Int32Array;
  /** Start offsets of the windows. */
  starts: Int32Array;
  /** Tokens per window (inputs). */
  seq: number;
  /** Per token of the stream: 1 when it is a training target, 0 when it is context only. */
  mask?: Uint8Array;
}

/**
 * Cuts `tokens` into non-overlapping windows of `seq + 1` tokens (consecutive windows share one
 * token), and splits them: the last `evalFraction` of the stream is held out.
 *
 * @throws RyzansteinError `INVALID_ARGUMENT` when the data is too short for one training and one
 *   held-out window.
 */
export function makeWindows(
  tokens: Int32Array,
  seq: number,
  evalFraction: number,
  mask?: Uint8Array,
): { train: WindowSet; eval: WindowSet } {
  if (mask && mask.length !== tokens.length)
    throw new RyzansteinError(
      "SHAPE_MISMATCH",
      `the loss mask has ${mask.length} entries for ${tokens.length} tokens`,
    );
  const count = Math.floor((tokens.length - 1) / seq);
  const nEval = evalFraction > 0 ? Math.max(1, Math.round(count * evalFraction)) : 0;
  if (count - nEval < 1 || (evalFraction > 0 && nEval < 1)) {
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `the data is too short: ${tokens.length} tokens make ${count} windows of ${seq + 1}; need at least ${evalFraction > 0 ? 2 : 1}`,
    );
  }
  const starts = (from: number, to: number) =>
    Int32Array.from({ length: to - from }, (_, i) => (from + i) * seq);
  return {
    train: { tokens, starts: starts(0, count - nEval), seq, mask },
    eval: { tokens, starts: starts(count - nEval, count), seq, mask },
  };
}

/** The window order of epoch `epoch`: a Fisher–Yates shuffle seeded by `(seed, epoch)`. */
export function epochOrder(count: number, seed: number, epoch: number): Int32Array {
  const order = Int32Array.from({ length: count }, (_, i) => i);
  const rand = seededRandom((seed * 1000003 + epoch * 7919) >>> 0);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** Fills `inputs`/`targets` (`[batch, seq]`) with windows `ids` of `set` (masked targets are −1). */
export function fillBatch(
  set: WindowSet,
  ids: ArrayLike<number>,
  inputs: Int32Array,
  targets: Int32Array,
): void {
  const { seq, tokens, mask } = set;
  for (let b = 0; b < ids.length; b++) {
    const s = set.starts[ids[b]];
    for (let i = 0; i < seq; i++) {
      inputs[b * seq + i] = tokens[s + i];
      targets[b * seq + i] = !mask || mask[s + i + 1] ? tokens[s + i + 1] : -1;
    }
  }
}
