/** N-gram baselines on the same split as the model's evaluation, for bits-per-byte comparisons. */
import type { WindowSet } from "./data.js";

/** Held-out cross-entropy (nats, summed) of the baselines and the bytes the scored tokens cover. */
export interface BaselineResult {
  /** Unigram with add-one smoothing. */
  unigramNats: number;
  /** Bigram with interpolated absolute discounting (d = 0.75) over the add-one unigram. */
  bigramNats: number;
  /** Tokens scored (every target of every held-out window). */
  tokens: number;
  /** Bytes those tokens decode to. */
  bytes: number;
}

/**
 * Fits unigram and bigram models on the tokens before the first held-out window and scores the
 * targets of every held-out window (exactly the tokens the model's evaluation scores).
 *
 * @param tokenBytes - bytes each token id decodes to
 */
export function ngramBaselines(
  evalSet: WindowSet,
  vocab: number,
  tokenBytes: ArrayLike<number>,
): BaselineResult {
  const { tokens, seq } = evalSet;
  const end = evalSet.starts.length ? evalSet.starts[0] + 1 : tokens.length;
  const uni = new Float64Array(vocab);
  const big = new Map<number, number>();
  const ctx = new Float64Array(vocab); // count of a token as a context
  const types = new Float64Array(vocab); // distinct followers
  for (let i = 0; i < end; i++) {
    uni[tokens[i]]++;
    if (i + 1 < end) {
      const key = tokens[i] * vocab + tokens[i + 1];
      const c = big.get(key) ?? 0;
      if (c === 0) types[tokens[i]]++;
      big.set(key, c + 1);
      ctx[tokens[i]]++;
    }
  }
  const n = end;
  const d = 0.75;
  let unigramNats = 0;
  let bigramNats = 0;
  let count = 0;
  let bytes = 0;
  for (const s of evalSet.starts) {
    for (let i = 1; i <= seq; i++) {
      const prev = tokens[s + i - 1];
      const t = tokens[s + i];
      const pu = (uni[t] + 1) / (n + vocab);
      unigramNats -= Math.log(pu);
      let pb = pu;
      if (ctx[prev] > 0) {
        const c = big.get(prev * vocab + t) ?? 0;
        pb = Math.max(c - d, 0) / ctx[prev] + ((d * types[prev]) / ctx[prev]) * pu;
      }
      bigramNats -= Math.log(pb);
      count++;
      bytes += tokenBytes[t];
    }
  }
  return { unigramNats, bigramNats, tokens: count, bytes };
}
