import { type ComputeFormat, FORMAT_TRAITS } from "@ryzanstein/core-tensor";
import type { InputStats } from "./calibration.js";

/**
 * Relative output error of rounding a `[rows, cols]` matrix to `type`: Σ‖(W − Ŵ)x‖² / Σ‖Wx‖² over
 * the sampled calibration inputs, or ‖W − Ŵ‖² / ‖W‖² when the matrix has no observed input (the
 * embedding table).
 */
export function relativeRoundingError(
  values: Float32Array,
  rows: number,
  cols: number,
  type: ComputeFormat,
  stats?: InputStats,
): number {
  const traits = FORMAT_TRAITS[type];
  const rowBytes = (cols / traits.blockSize) * traits.typeSize;
  const bytes = new Uint8Array(rowBytes);
  const decoded = new Float32Array(cols);
  const useInputs = stats !== undefined && stats.sampleCount > 0 && stats.cols === cols;
  let num = 0;
  let den = 0;
  for (let r = 0; r < rows; r++) {
    const row = values.subarray(r * cols, (r + 1) * cols);
    traits.quantizeRowRef(values, r * cols, bytes, 0, cols);
    traits.dequantizeRow(bytes, 0, decoded, 0, cols);
    if (!useInputs) {
      for (let c = 0; c < cols; c++) {
        num += (row[c] - decoded[c]) ** 2;
        den += row[c] ** 2;
      }
      continue;
    }
    for (let k = 0; k < stats.sampleCount; k++) {
      const x = stats.samples.subarray(k * cols, (k + 1) * cols);
      let y = 0;
      let dy = 0;
      for (let c = 0; c < cols; c++) {
        y += row[c] * x[c];
        dy += (row[c] - decoded[c]) * x[c];
      }
      num += dy * dy;
      den += y * y;
    }
  }
  return den > 0 ? num / den : 0;
}
