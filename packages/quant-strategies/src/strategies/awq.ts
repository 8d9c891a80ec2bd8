import { type ComputeFormat, FORMAT_TRAITS } from "@ryzanstein/core-tensor";
import type { CalibrationData, InputStats } from "../calibration.js";
import type { FloatModel, FloatTensor } from "../float-model.js";

/** A group of matrices that read one input, and where the inverse of their input scale is folded. */
export interface AwqGroup {
  /** Input-group key (as in the calibration data). */
  readonly input: string;
  /** The matrices whose columns are multiplied by the scales. */
  readonly members: readonly string[];
  /** The tensor that absorbs `1/s`: a norm weight (divided element-wise) or the producing matrix (its rows divided). */
  readonly foldInto: string;
  /** Extra vectors divided with the rows of `foldInto` (its bias). */
  readonly foldAlso: readonly string[];
}

/** What the scale search chose for one group. */
export interface AwqGroupResult {
  /** Input-group key. */
  input: string;
  /** The chosen exponent α of s = mean|x|^α (0 means plain round-to-nearest). */
  alpha: number;
  /** Output error ‖WX − ŴX‖² over the sampled inputs with plain RTN (α = 0). */
  rtnError: number;
  /** The same error with the chosen scales. */
  awqError: number;
}

/** Options of {@link applyAwq}. */
export interface AwqOptions {
  /** Grid points for α in [0, 1] (default 20, as in the AWQ paper's search). */
  gridSize?: number;
  /** Search a clipping range per block after scaling (AWQ's auto-clip; default true). */
  clip?: boolean;
}

const CLIP_RATIOS = [1, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5];

/**
 * AWQ's weight clipping for block formats: for every block of every row, the values are clamped
 * to ±r·max|w| for r in 1 … 0.5 before rounding, and the r whose rounding error e has the
 * smallest output energy eᵀ·H_bb·e (H = E[xxᵀ] of the block's input channels, with the AWQ
 * scales `s` already applied to the weights) is kept. Rewrites `values` in place.
 */
export function clipBlocks(
  values: Float32Array,
  rows: number,
  cols: number,
  type: ComputeFormat,
  stats: InputStats,
  s?: Float64Array,
): void {
  const traits = FORMAT_TRAITS[type];
  const bs = traits.blockSize;
  if (bs === 1 || stats.xtx.length !== cols * cols) return;
  const h = new Float64Array(bs * bs);
  const block = new Float32Array(bs);
  const bytes = new Uint8Array(traits.typeSize);
  const decoded = new Float32Array(bs);
  const e = new Float64Array(bs);
  const best = new Float32Array(bs);
  for (let b = 0; b < cols / bs; b++) {
    // The block's Hessian in the scaled domain: H_ij / (s_i·s_j).
    for (let i = 0; i < bs; i++) {
      for (let j = 0; j < bs; j++) {
        const ci = b * bs + i;
        const cj = b * bs + j;
        h[i * bs + j] = stats.xtx[ci * cols + cj] / (s ? s[ci] * s[cj] : 1);
      }
    }
    for (let r = 0; r < rows; r++) {
      const at = r * cols + b * bs;
      let amax = 0;
      for (let i = 0; i < bs; i++) amax = Math.max(amax, Math.abs(values[at + i]));
      if (amax === 0) continue;
      let bestError = Number.POSITIVE_INFINITY;
      for (const ratio of CLIP_RATIOS) {
        const limit = ratio * amax;
        for (let i = 0; i < bs; i++) block[i] = Math.max(-limit, Math.min(limit, values[at + i]));
        traits.quantizeRowRef(block, 0, bytes, 0, bs);
        traits.dequantizeRow(bytes, 0, decoded, 0, bs);
        for (let i = 0; i < bs; i++) e[i] = values[at + i] - decoded[i];
        let err = 0;
        for (let i = 0; i < bs; i++) {
          if (e[i] === 0) continue;
          let row = 0;
          for (let j = 0; j < bs; j++) row += h[i * bs + j] * e[j];
          err += e[i] * row;
        }
        if (err < bestError) {
          bestError = err;
          best.set(block);
        }
      }
      values.set(best, at);
    }
  }
}

/**
 * The scalable groups of a Llama-family model: Q/K/V and gate/up fold into their RMSNorm weight,
 * the output projection into V (only when V and O's input have the same width, i.e. without
 * grouped-query attention), down into up, and the classifier into the final norm when untied.
 */
export function awqGroups(model: FloatModel): AwqGroup[] {
  const has = (n: string) => model.byName.has(n);
  const groups: AwqGroup[] = [];
  for (let l = 0; has(`blk.${l}.attn_norm.weight`); l++) {
    const p = `blk.${l}.`;
    const qkv = has(`${p}attn_qkv.weight`)
      ? [`${p}attn_qkv.weight`]
      : [`${p}attn_q.weight`, `${p}attn_k.weight`, `${p}attn_v.weight`];
    groups.push({ input: `${p}attn_in`, members: qkv, foldInto: `${p}attn_norm.weight`, foldAlso: [] });
    const v = model.byName.get(`${p}attn_v.weight`);
    const o = model.byName.get(`${p}attn_output.weight`);
    if (v && o && v.shape[0] === o.shape[1]) {
      groups.push({
        input: `${p}attn_out`,
        members: [o.name],
        foldInto: v.name,
        foldAlso: has(`${p}attn_v.bias`) ? [`${p}attn_v.bias`] : [],
      });
    }
    if (has(`${p}ffn_gate.weight`)) {
      groups.push({
        input: `${p}ffn_in`,
        members: [`${p}ffn_gate.weight`, `${p}ffn_up.weight`],
        foldInto: `${p}ffn_norm.weight`,
        foldAlso: [],
      });
      groups.push({
        input: `${p}ffn_act`,
        members: [`${p}ffn_down.weight`],
        foldInto: `${p}ffn_up.weight`,
        foldAlso: [],
      });
    }
  }
  if (has("output.weight") && has("output_norm.weight"))
    groups.push({
      input: "output_in",
      members: ["output.weight"],
      foldInto: "output_norm.weight",
      foldAlso: [],
    });
  return groups;
}

/** Σ over sampled inputs of ‖(W − Ŵ)x‖², with Ŵ = dequant(quant(W·diag(s)))·diag(1/s). */
function scaledError(
  w: FloatTensor,
  type: ComputeFormat,
  s: Float64Array | undefined,
  stats: InputStats,
): number {
  const [rows, cols] = w.shape;
  const traits = FORMAT_TRAITS[type];
  const rowBytes = (cols / traits.blockSize) * traits.typeSize;
  const scaled = new Float32Array(cols);
  const bytes = new Uint8Array(rowBytes);
  const decoded = new Float32Array(cols);
  const delta = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) scaled[c] = s ? w.values[r * cols + c] * s[c] : w.values[r * cols + c];
    traits.quantizeRowRef(scaled, 0, bytes, 0, cols);
    traits.dequantizeRow(bytes, 0, decoded, 0, cols);
    for (let c = 0; c < cols; c++)
      delta[r * cols + c] = w.values[r * cols + c] - (s ? decoded[c] / s[c] : decoded[c]);
  }
  let total = 0;
  for (let k = 0; k < stats.sampleCount; k++) {
    const x = stats.samples.subarray(k * cols, (k + 1) * cols);
    for (let r = 0; r < rows; r++) {
      let y = 0;
      const base = r * cols;
      for (let c = 0; c < cols; c++) y += delta[base + c] * x[c];
      total += y * y;
    }
  }
  return total;
}

/**
 * AWQ (Lin et al. 2023): for each group, searches α on a grid so that scaling the input channels
 * by s = mean|x|^α (normalized by √(max·min)) before rounding minimizes the group's output error
 * on the calibration sample; multiplies the members' columns by s and folds 1/s into the preceding
 * norm or matrix, so the float model computes exactly the same function and inference cost is
 * unchanged; then (unless `clip: false`) clips each block as `clipBlocks` does. Rewrites `model`
 * in place; `formatOf` gives each member's format. Clipping changes the float weights, so only
 * `clip: false` keeps the float model's outputs identical.
 */
export function applyAwq(
  model: FloatModel,
  calibration: CalibrationData,
  formatOf: (name: string) => ComputeFormat,
  options: AwqOptions = {},
): AwqGroupResult[] {
  const grid = options.gridSize ?? 20;
  const results: AwqGroupResult[] = [];
  const chosen: Array<{ group: AwqGroup; s: Float64Array }> = [];
  for (const group of awqGroups(model)) {
    const stats = calibration.inputs.get(group.input);
    const members = group.members.map((n) => model.byName.get(n)).filter((t): t is FloatTensor => !!t);
    if (!stats || stats.sampleCount === 0 || members.length !== group.members.length) continue;
    const mean = Array.from(stats.absSum, (v) => v / stats.count);
    const error = (s: Float64Array | undefined) =>
      members.reduce((sum, m) => sum + scaledError(m, formatOf(m.name), s, stats), 0);
    const rtnError = error(undefined);
    let best = { alpha: 0, error: rtnError, s: undefined as Float64Array | undefined };
    for (let g = 1; g < grid; g++) {
      const alpha = g / grid;
      const s = scalesFor(mean, alpha);
      const e = error(s);
      if (e < best.error) best = { alpha, error: e, s };
    }
    results.push({ input: group.input, alpha: best.alpha, rtnError, awqError: best.error });
    if (best.s) chosen.push({ group, s: best.s });
  }
  // Apply after every search so each group's search saw the unmodified float model.
  for (const { group, s } of chosen) foldScales(model, group, s);
  if (options.clip ?? true) {
    for (const group of awqGroups(model)) {
      const stats = calibration.inputs.get(group.input);
      if (!stats) continue;
      const s = chosen.find((c) => c.group === group)?.s;
      for (const name of group.members) {
        const t = model.byName.get(name) as FloatTensor;
        clipBlocks(t.values, t.shape[0], t.shape[1], formatOf(name), stats, s);
      }
    }
  }
  return results;
}

/** s = mean^α clamped at 1e-4 and normalized by √(max·min), as AWQ does. */
function scalesFor(mean: readonly number[], alpha: number): Float64Array {
  const s = new Float64Array(mean.length);
  let max = 0;
  let min = Number.POSITIVE_INFINITY;
  for (let c = 0; c < mean.length; c++) {
    s[c] = Math.max(1e-4, mean[c] ** alpha);
    max = Math.max(max, s[c]);
    min = Math.min(min, s[c]);
  }
  const norm = Math.sqrt(max * min);
  for (let c = 0; c < mean.length; c++) s[c] = Math.fround(s[c] / norm);
  return s;
}

/** Multiplies the members' columns by s and divides the fold target (and its bias) by s. */
function foldScales(model: FloatModel, group: AwqGroup, s: Float64Array): void {
  for (const name of group.members) {
    const t = model.byName.get(name) as FloatTensor;
    const cols = t.shape[1];
    for (let i = 0; i < t.values.length; i++) t.values[i] *= s[i % cols];
  }
  const target = model.byName.get(group.foldInto) as FloatTensor;
  if (target.shape.length === 1) {
    for (let c = 0; c < s.length; c++) target.values[c] /= s[c];
  } else {
    const cols = target.shape[1];
    for (let r = 0; r < s.length; r++) for (let c = 0; c < cols; c++) target.values[r * cols + c] /= s[r];
  }
  for (const name of group.foldAlso) {
    const b = model.byName.get(name);
    if (b) for (let c = 0; c < s.length; c++) b.values[c] /= s[c];
  }
}
