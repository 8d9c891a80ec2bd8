// Correctness on the benchmarked file before any ratio is printed: llama.cpp's greedy trace, and
// ours evaluated on the same tokens (teacher forcing), compared token by token and in top-k
// log-probabilities.
import { logSoftmax } from "@ryzanstein/test-support";
import type { OurSession } from "./ours.js";
import { type PeerSession, peerGreedy } from "./peer.js";

/** Outcome of {@link checkFile}. */
export interface CheckResult {
  ok: boolean;
  steps: number;
  /** Steps where the greedy tokens differ although llama.cpp's top-2 gap exceeds the tolerance. */
  tokenMismatches: number;
  /** Steps skipped for the token comparison (near ties). */
  nearTies: number;
  /** Largest and mean |Δ log p| over llama.cpp's top-k tokens. */
  maxLogprobDiff: number;
  meanLogprobDiff: number;
  tolerance: number;
}

/**
 * Compares `steps` greedy steps after `prompt`: `tolerance` bounds the largest top-k |Δ log p| (and
 * a third of it the mean); greedy tokens must agree wherever llama.cpp's top-2 gap exceeds it.
 */
export async function checkFile(
  ours: OurSession,
  peer: PeerSession,
  prompt: number[],
  steps: number,
  k: number,
  tolerance: number,
): Promise<CheckResult> {
  const trace = await peerGreedy(peer, prompt, steps, k);
  // A context of its own with llama.cpp's attention numerics (F16 accumulation for batches under 64
  // tokens): with it the two engines agree to float rounding, so the bound proves the kernels.
  const ctx = ours.model.createContext(prompt.length + steps + 1, 64, "f16", "llama.cpp");
  let logits = ours.model.forward(ctx, prompt);
  let tokenMismatches = 0;
  let nearTies = 0;
  let maxDiff = 0;
  let sumDiff = 0;
  let count = 0;
  for (const step of trace) {
    const lp = logSoftmax(logits);
    let best = 0;
    for (let j = 1; j < lp.length; j++) if (lp[j] > lp[best]) best = j;
    if (step.top2Gap < tolerance) nearTies++;
    else if (best !== step.token) tokenMismatches++;
    for (const t of step.top) {
      const d = Math.abs(lp[t.token] - t.logprob);
      maxDiff = Math.max(maxDiff, d);
      sumDiff += d;
      count++;
    }
    logits = ours.model.forward(ctx, [step.token]);
  }
  const meanDiff = count ? sumDiff / count : 0;
  return {
    ok: tokenMismatches === 0 && maxDiff <= tolerance && meanDiff <= tolerance / 3,
    steps: trace.length,
    tokenMismatches,
    nearTies,
    maxLogprobDiff: maxDiff,
    meanLogprobDiff: meanDiff,
    tolerance,
  };
}
