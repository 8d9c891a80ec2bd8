import type { CalibrationData, InputStats } from "../src/index.js";

/** Seeded uniform generator in [0, 1). */
export function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 2 ** 32;
  };
}

/** Seeded standard normal generator. */
export function normal(seed: number): () => number {
  const u = uniform(seed);
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/**
 * `n` rows of correlated inputs of width `cols` (x = z·A with a random mixing matrix, plus a few
 * loud channels, like LLM activations), as row-major `[n, cols]`.
 */
export function correlatedInputs(n: number, cols: number, seed: number): Float32Array {
  const g = normal(seed);
  const rank = Math.max(2, cols >> 2);
  const a = Float64Array.from({ length: rank * cols }, g);
  const loud = Float64Array.from({ length: cols }, (_, i) => (i % 7 === 0 ? 6 : 1));
  const x = new Float32Array(n * cols);
  for (let r = 0; r < n; r++) {
    const z = Array.from({ length: rank }, g);
    for (let c = 0; c < cols; c++) {
      let v = 0.1 * g();
      for (let k = 0; k < rank; k++) v += z[k] * a[k * cols + c];
      x[r * cols + c] = v * loud[c];
    }
  }
  return x;
}

/** Input statistics of the rows of `x` as the calibration engine collects them. */
export function statsOf(x: Float32Array, n: number, cols: number, maxSamples = 256): InputStats {
  const xtx = new Float64Array(cols * cols);
  const absSum = new Float64Array(cols);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < cols; i++) {
      absSum[i] += Math.abs(x[r * cols + i]);
      for (let j = 0; j < cols; j++) xtx[i * cols + j] += x[r * cols + i] * x[r * cols + j];
    }
  }
  const m = Math.min(n, maxSamples);
  return { cols, count: n, xtx, absSum, samples: x.slice(0, m * cols), sampleCount: m };
}

/** Calibration data holding one input group. */
export function calibrationOf(group: string, stats: InputStats): CalibrationData {
  return { inputs: new Map([[group, stats]]), tokens: stats.count };
}

/** ‖W·X − Ŵ·X‖² over the rows of `x` (`w`, `wq`: `[rows, cols]`, `x`: `[n, cols]`). */
export function outputError(
  w: Float32Array,
  wq: Float32Array,
  x: Float32Array,
  rows: number,
  cols: number,
  n: number,
): number {
  let total = 0;
  for (let k = 0; k < n; k++) {
    for (let r = 0; r < rows; r++) {
      let d = 0;
      for (let c = 0; c < cols; c++) d += (w[r * cols + c] - wq[r * cols + c]) * x[k * cols + c];
      total += d * d;
    }
  }
  return total;
}
