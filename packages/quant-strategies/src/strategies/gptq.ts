import { type ComputeFormat, FORMAT_TRAITS, RyzansteinError, typeName } from "@ryzanstein/core-tensor";
import type { InputStats } from "../calibration.js";
import { ELEMENT_CODECS } from "../codecs.js";
import { choleskyLower, inverseFromCholesky } from "../linalg.js";
import { dequantizeMatrix } from "./rtn.js";

/** Options of {@link gptqQuantize}. */
export interface GptqOptions {
  /** Dampening added to the Hessian's diagonal, as a fraction of its mean (default 0.01). */
  dampening?: number;
  /** Columns per lazy batch (default 128, rounded up to a multiple of the format's block). */
  batchSize?: number;
  /** Quantize columns in order of decreasing Hessian diagonal (default false); block scales are then fixed up front from the unmodified weights. */
  actOrder?: boolean;
  /**
   * Columns per GPTQ group: 32, 64, 128 or a larger power of two (default: the format's block).
   * When a group starts, the scales of every block in it are fixed from the error-compensated
   * weights at that point, as GPTQ fits a group's quantizer; the file keeps its per-block scales.
   * A group smaller than the format's block (e.g. 64 for a 256-column K-quant) is the block.
   */
  groupSize?: number;
}

/** Validates a GPTQ group size (a power of two, at least 32), with a typed error. */
export function checkGptqGroupSize(groupSize: number): void {
  if (!Number.isInteger(groupSize) || groupSize < 32 || (groupSize & (groupSize - 1)) !== 0) {
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `GPTQ group size must be 32, 64, 128 or a larger power of two, got ${groupSize}`,
    );
  }
}

/** True when GPTQ can write `type` column by column. */
export function gptqSupports(type: ComputeFormat): boolean {
  return ELEMENT_CODECS[type] !== undefined;
}

/**
 * `H⁻¹` in the upper Cholesky form GPTQ uses, for `H = 2·xᵀx/count + λ·I` (λ = dampening × mean
 * diagonal, raised tenfold while H is not positive definite). Columns never seen active get H_ii = 1.
 */
function hessianInverseUpper(stats: InputStats, perm: Int32Array, dampening: number): Float64Array {
  const n = stats.cols;
  const h = new Float64Array(n * n);
  const scale = 2 / Math.max(1, stats.count);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) h[i * n + j] = stats.xtx[perm[i] * n + perm[j]] * scale;
  let meanDiag = 0;
  for (let i = 0; i < n; i++) {
    if (h[i * n + i] === 0) h[i * n + i] = 1;
    meanDiag += h[i * n + i] / n;
  }
  for (let damp = dampening; damp < 1e4; damp *= 10) {
    const a = h.slice();
    for (let i = 0; i < n; i++) a[i * n + i] += damp * meanDiag;
    if (!choleskyLower(a, n)) continue;
    const inv = inverseFromCholesky(a, n);
    if (!choleskyLower(inv, n)) continue;
    // Upper factor U = Lᵀ of H⁻¹ = Uᵀ·U.
    const u = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = inv[j * n + i];
    return u;
  }
  throw new RyzansteinError("INVALID_ARGUMENT", "GPTQ: the calibration Hessian is not positive definite");
}

/**
 * GPTQ (Frantar et al. 2022) written straight into a block format: columns are quantized one at
 * a time with the block's scales fixed when the block starts, and each column's error, weighted
 * by the inverse Hessian, is pushed onto the columns not yet quantized (lazy batches; OBS update).
 * Returns the encoded matrix; its decoded values are exactly the ones the error propagation used
 * (checked before returning).
 */
export function gptqQuantize(
  weights: Float32Array,
  rows: number,
  cols: number,
  type: ComputeFormat,
  stats: InputStats,
  options: GptqOptions = {},
): Uint8Array {
  const codec = ELEMENT_CODECS[type];
  if (!codec) {
    throw new RyzansteinError("INVALID_ARGUMENT", `GPTQ cannot write ${typeName(type)} column by column`);
  }
  if (stats.cols !== cols || stats.xtx.length !== cols * cols) {
    throw new RyzansteinError(
      "SHAPE_MISMATCH",
      `GPTQ: Hessian of ${stats.cols} columns for a matrix of ${cols}`,
    );
  }
  const traits = FORMAT_TRAITS[type];
  const bs = traits.blockSize;
  const rowBytes = (cols / bs) * traits.typeSize;
  const actOrder = options.actOrder ?? false;
  if (options.groupSize !== undefined) checkGptqGroupSize(options.groupSize);
  // Powers of two at least 32, and blocks of 32 or 256: the larger is a multiple of the block.
  const group = Math.max(bs, options.groupSize ?? bs);
  const batch = Math.ceil((options.batchSize ?? 128) / bs) * bs;

  // Column order: identity, or by decreasing Hessian diagonal (act-order).
  const perm = Int32Array.from({ length: cols }, (_, i) => i);
  if (actOrder) perm.sort((a, b) => stats.xtx[b * cols + b] - stats.xtx[a * cols + a]);
  const u = hessianInverseUpper(stats, perm, options.dampening ?? 0.01);

  // Working copy, columns in processing order.
  const w = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let i = 0; i < cols; i++) w[r * cols + i] = weights[r * cols + perm[i]];
  const out = new Uint8Array(rows * rowBytes);
  const used = new Float32Array(rows * cols); // decoded values, original column order
  const blockValues = new Float32Array(bs);
  const encodeBlock = (r: number, block: number, src: Float32Array, srcOffset: number): void => {
    traits.quantizeRowRef(src, srcOffset, out, r * rowBytes + block * traits.typeSize, bs);
  };
  // Act-order visits a block's columns out of order, so its scales come from the original weights.
  if (actOrder)
    for (let r = 0; r < rows; r++)
      for (let b = 0; b < cols / bs; b++) encodeBlock(r, b, weights, r * cols + b * bs);

  const err = new Float64Array(rows * batch);
  for (let i1 = 0; i1 < cols; i1 += batch) {
    const i2 = Math.min(cols, i1 + batch);
    const count = i2 - i1;
    for (let i = i1; i < i2; i++) {
      const col = perm[i];
      if (!actOrder && col % group === 0) {
        // Group start: fix the scales of its blocks from the current (error-compensated) weights.
        const end = Math.min(cols, col + group);
        for (let r = 0; r < rows; r++) {
          for (let b0 = col; b0 < end; b0 += bs) {
            for (let j = 0; j < bs; j++) blockValues[j] = w[r * cols + b0 + j];
            encodeBlock(r, b0 / bs, blockValues, 0);
          }
        }
      }
      const d = u[i * cols + i];
      const blockOffset = Math.floor(col / bs) * traits.typeSize;
      for (let r = 0; r < rows; r++) {
        const x = w[r * cols + i];
        const q = codec.set(out, r * rowBytes + blockOffset, col % bs, x);
        used[r * cols + col] = q;
        const e = (x - q) / d;
        err[r * batch + (i - i1)] = e;
        const wr = r * cols;
        for (let k = i + 1; k < i2; k++) w[wr + k] -= e * u[i * cols + k];
      }
    }
    // Lazy batch update of the columns after this batch: W[:, i2:] -= Err · U[i1:i2, i2:].
    if (i2 < cols) {
      for (let r = 0; r < rows; r++) {
        const wr = r * cols;
        for (let t = 0; t < count; t++) {
          const e = err[r * batch + t];
          if (e === 0) continue;
          const ur = (i1 + t) * cols;
          for (let k = i2; k < cols; k++) w[wr + k] -= e * u[ur + k];
        }
      }
    }
  }
  // The written blocks must decode to exactly what the error propagation assumed.
  const decoded = dequantizeMatrix(out, rows, cols, type);
  for (let i = 0; i < decoded.length; i++) {
    if (decoded[i] !== used[i] && !(Number.isNaN(decoded[i]) && Number.isNaN(used[i]))) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `GPTQ: ${typeName(type)} block decodes to ${decoded[i]} where ${used[i]} was used (element ${i})`,
      );
    }
  }
  return out;
}
