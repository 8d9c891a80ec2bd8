import { type ComputeFormat, RyzansteinError, TYPE_INFO, typeName } from "@ryzanstein/core-tensor";
import { type CalibrationData, inputGroupOf } from "../calibration.js";
import type { FloatModel, FloatTensor } from "../float-model.js";
import { type AwqOptions, applyAwq } from "./awq.js";
import { type GptqOptions, gptqQuantize, gptqSupports } from "./gptq.js";
import { describePlan, planMixedFormats } from "./mixed.js";
import { rtnQuantize } from "./rtn.js";

/** Names of the registered strategies. */
export type StrategyName = "rtn" | "gptq" | "awq" | "mixed" | "auto";

/** How one matrix was encoded. */
export type EncodingMethod = "rtn" | "gptq";

/** What a strategy sees while it prepares and encodes a model. */
export interface StrategyContext {
  /** The float model (a working copy the strategy may rewrite). */
  readonly model: FloatModel;
  /** Calibration statistics, when calibration text was given. */
  readonly calibration: CalibrationData | undefined;
  /** The format asked for. */
  readonly requested: ComputeFormat;
  /** Format per matrix (the requested one, or its fallback); strategies may re-plan it. */
  readonly formats: Map<string, ComputeFormat>;
  /** Bytes the matrices may take in all (mixed/auto; default: what the uniform plan takes). */
  readonly budgetBytes: number;
  /** GPTQ settings. */
  readonly gptq: GptqOptions;
  /** AWQ settings. */
  readonly awq: AwqOptions;
  /** Lines for the user: what the strategy decided. */
  readonly notes: string[];
}

/** One way of turning float weights into a smaller format: one registry entry. */
export interface QuantizationStrategy {
  /** Registry name. */
  readonly name: StrategyName;
  /** One line for help texts. */
  readonly description: string;
  /** True when it cannot run without calibration text. */
  readonly needsCalibration: boolean;
  /** Model-level work before encoding: fold scales (AWQ), choose per-tensor formats (mixed). */
  prepare?(ctx: StrategyContext): void;
  /** Encodes one matrix in `type`. */
  quantize(
    tensor: FloatTensor,
    type: ComputeFormat,
    ctx: StrategyContext,
  ): { data: Uint8Array; method: EncodingMethod };
}

function rtnEncode(t: FloatTensor, type: ComputeFormat) {
  return { data: rtnQuantize(t.values, t.shape[0], t.shape[1], type), method: "rtn" as const };
}

/** GPTQ where the matrix has a Hessian and the format a column codec; RTN otherwise (F16/F32 fallbacks, embeddings). */
function gptqEncode(t: FloatTensor, type: ComputeFormat, ctx: StrategyContext) {
  const stats = ctx.calibration?.inputs.get(inputGroupOf(t.name) ?? "");
  if (!stats || stats.xtx.length === 0 || !gptqSupports(type) || TYPE_INFO[type].blockSize === 1)
    return rtnEncode(t, type);
  const [rows, cols] = t.shape;
  return { data: gptqQuantize(t.values, rows, cols, type, stats, ctx.gptq), method: "gptq" as const };
}

/** Refuses a GPTQ run whose requested block format has no column codec. */
function checkGptqFormats(ctx: StrategyContext): void {
  for (const type of new Set(ctx.formats.values())) {
    if (TYPE_INFO[type].blockSize > 1 && !gptqSupports(type)) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `strategy gptq cannot write ${typeName(type)} yet; use rtn or awq for it`,
      );
    }
  }
}

const rtn: QuantizationStrategy = {
  name: "rtn",
  description: "round to nearest with each format's reference quantizer",
  needsCalibration: false,
  quantize: (t, type) => rtnEncode(t, type),
};

const gptq: QuantizationStrategy = {
  name: "gptq",
  description: "GPTQ: Hessian-weighted error compensation column by column (needs calibration)",
  needsCalibration: true,
  prepare: checkGptqFormats,
  quantize: gptqEncode,
};

const awq: QuantizationStrategy = {
  name: "awq",
  description: "AWQ: activation-aware input-channel scales folded into the preceding norm/layer, then RTN",
  needsCalibration: true,
  prepare(ctx) {
    const results = applyAwq(
      ctx.model,
      ctx.calibration as CalibrationData,
      (n) => ctx.formats.get(n) as ComputeFormat,
      ctx.awq,
    );
    const scaled = results.filter((r) => r.alpha > 0);
    ctx.notes.push(
      `awq: scaled ${scaled.length} of ${results.length} input groups (${scaled.map((r) => `${r.input} α=${r.alpha}`).join(", ")}); clipping searched per block`,
    );
  },
  quantize: (t, type) => rtnEncode(t, type),
};

/** The matrices a plan covers, in model order. */
function plannedMatrices(ctx: StrategyContext): FloatTensor[] {
  return [...ctx.formats.keys()].map((n) => ctx.model.byName.get(n) as FloatTensor);
}

const mixed: QuantizationStrategy = {
  name: "mixed",
  description: "per-tensor formats from calibration sensitivity under a size budget, encoded with GPTQ",
  needsCalibration: true,
  prepare(ctx) {
    // The classifier and the embedding table never go below the requested format: their errors
    // reach every token directly, which a per-matrix output error does not weigh (measured: the
    // classifier alone at Q2_K doubled the default model's perplexity increase).
    const floors = new Map(
      ["output.weight", "token_embd.weight"]
        .filter((n) => ctx.formats.has(n))
        .map((n) => [n, ctx.requested] as const),
    );
    const plan = planMixedFormats(plannedMatrices(ctx), ctx.calibration, {
      budgetBytes: ctx.budgetBytes,
      candidates: [...new Set([...mixedFormatsAvailable(), ctx.requested])],
      floors,
    });
    for (const [n, t] of plan.formats) ctx.formats.set(n, t);
    ctx.notes.push(`mixed: ${describePlan(plan.formats)} (${plan.bytes} bytes of matrices)`);
  },
  quantize: gptqEncode,
};

/** Formats mixed chooses among: those GPTQ can write (so every matrix gets error compensation). */
function mixedFormatsAvailable(): ComputeFormat[] {
  return (Object.keys(TYPE_INFO).map(Number) as ComputeFormat[]).filter(
    (t) => TYPE_INFO[t].blockSize > 1 && gptqSupports(t),
  );
}

const auto: QuantizationStrategy = {
  name: "auto",
  description: "AutoSelector: strategy and per-tensor formats for a target size or perplexity increase",
  needsCalibration: true,
  // The selection itself runs in quantizeModel (it may quantize and score several candidates);
  // by the time encoding starts, `formats` holds its choice.
  quantize: gptqEncode,
};

/** The strategy registry. */
export const STRATEGIES: Readonly<Record<StrategyName, QuantizationStrategy>> = {
  rtn,
  gptq,
  awq,
  mixed,
  auto,
};

/** Looks a strategy up by name; throws INVALID_ARGUMENT listing the choices. */
export function getStrategy(name: string): QuantizationStrategy {
  if (!Object.hasOwn(STRATEGIES, name)) {
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `unknown strategy ${name}: choose one of ${Object.keys(STRATEGIES).join(", ")}`,
    );
  }
  return STRATEGIES[name as StrategyName];
}
