import { type ComputeFormat, RyzansteinError, TYPE_INFO, typeName } from "@ryzanstein/core-tensor";
import { type CalibrationData, inputGroupOf } from "../calibration.js";
import type { FloatTensor } from "../float-model.js";
import { fallbackLadder, fitFormat, matrixBytes } from "../format-choice.js";
import { relativeRoundingError } from "../sensitivity.js";

/** Options of {@link planMixedFormats}. */
export interface MixedPlanOptions {
  /** Bytes the quantized matrices may take in all. */
  budgetBytes: number;
  /** Formats to choose from (default: every quantized row of the fallback ladder). */
  candidates?: ComputeFormat[];
  /** Per-matrix lowest format: candidates smaller than it are not considered for that matrix. */
  floors?: ReadonlyMap<string, ComputeFormat>;
}

/** Per-tensor formats and what they cost. */
export interface MixedPlan {
  /** Format by tensor name. */
  formats: Map<string, ComputeFormat>;
  /** Bytes of the planned matrices. */
  bytes: number;
  /** Sum of the per-tensor relative errors. */
  error: number;
}

/** Quantized formats the mixed planner chooses among, smallest first. */
export function mixedCandidates(): ComputeFormat[] {
  return fallbackLadder().filter((t) => TYPE_INFO[t].blockSize > 1);
}

/**
 * Bit allocation under a size budget: each matrix's sensitivity (its relative output error on the
 * calibration inputs, per candidate format) is measured; every matrix starts at its cheapest
 * format, then the upgrade with the largest error reduction per extra byte is taken while it fits
 * the budget. Sensitive tensors (often the classifier, embeddings and attention V) end up with more
 * bits. Throws TARGET_UNREACHABLE when even the cheapest formats exceed the budget.
 */
export function planMixedFormats(
  matrices: readonly FloatTensor[],
  calibration: CalibrationData | undefined,
  options: MixedPlanOptions,
): MixedPlan {
  const candidates = options.candidates ?? mixedCandidates();
  // Cheapest plan first: an unreachable budget fails before any sensitivity is measured.
  const typesOf = matrices.map((t) => {
    const [rows, cols] = t.shape;
    const floor = options.floors?.get(t.name);
    const least = floor === undefined ? 0 : matrixBytes(fitFormat(floor, cols), rows, cols);
    return [...new Set(candidates.map((c) => fitFormat(c, cols)))]
      .filter((type) => matrixBytes(type, rows, cols) >= least)
      .sort((a, b) => matrixBytes(a, rows, cols) - matrixBytes(b, rows, cols));
  });
  const minimum = matrices.reduce((s, t, i) => s + matrixBytes(typesOf[i][0], t.shape[0], t.shape[1]), 0);
  if (minimum > options.budgetBytes) {
    throw new RyzansteinError(
      "TARGET_UNREACHABLE",
      `the weight matrices need at least ${minimum} bytes (every matrix in its smallest format), over the budget of ${options.budgetBytes}`,
    );
  }
  const options_ = matrices.map((t, i) => {
    const [rows, cols] = t.shape;
    const stats = calibration?.inputs.get(inputGroupOf(t.name) ?? "");
    return typesOf[i].map((type) => ({
      type,
      bytes: matrixBytes(type, rows, cols),
      error: relativeRoundingError(t.values, rows, cols, type, stats),
    }));
  });
  const choice = options_.map(() => 0);
  let bytes = minimum;
  for (;;) {
    let best: { t: number; k: number; gain: number } | undefined;
    options_.forEach((o, t) => {
      const cur = o[choice[t]];
      for (let k = choice[t] + 1; k < o.length; k++) {
        const extra = o[k].bytes - cur.bytes;
        if (bytes + extra > options.budgetBytes) continue;
        const gain = (cur.error - o[k].error) / Math.max(1, extra);
        if (gain > 0 && (!best || gain > best.gain)) best = { t, k, gain };
      }
    });
    if (!best) break;
    const { t, k } = best;
    bytes += options_[t][k].bytes - options_[t][choice[t]].bytes;
    choice[t] = k;
  }
  const formats = new Map<string, ComputeFormat>();
  let error = 0;
  matrices.forEach((m, t) => {
    const o = options_[t][choice[t]];
    formats.set(m.name, o.type);
    error += o.error;
  });
  return { formats, bytes, error };
}

/** One-line summary of a plan: how many matrices got each format. */
export function describePlan(formats: ReadonlyMap<string, ComputeFormat>): string {
  const counts = new Map<string, number>();
  for (const t of formats.values()) counts.set(typeName(t), (counts.get(typeName(t)) ?? 0) + 1);
  return [...counts].map(([n, c]) => `${c}×${n}`).join(", ");
}
