import {
  GGUFValueType,
  type GGUFWriteTensor,
  type GGUFWriteValue,
  type ModelSource,
  parseGGUF,
  serializeGGUF,
  type WriteProgress,
  writeGGUF,
} from "@ryzanstein/convert";
import {
  type ComputeFormat,
  GGMLType,
  llamaFileType,
  RyzansteinError,
  TYPE_INFO,
  typeName,
} from "@ryzanstein/core-tensor";
import type { CalibrationData } from "./calibration.js";
import {
  cloneFloatModel,
  type FloatModel,
  type FloatTensor,
  isQuantizable,
  readFloatModel,
} from "./float-model.js";
import { bitsPerWeight, fitFormat, matrixBytes, quantTypes } from "./format-choice.js";
import type { AwqOptions } from "./strategies/awq.js";
import { checkGptqGroupSize, type GptqOptions } from "./strategies/gptq.js";
import { mixedCandidates } from "./strategies/mixed.js";
import {
  type EncodingMethod,
  getStrategy,
  type StrategyContext,
  type StrategyName,
} from "./strategies/registry.js";

/** Phases of {@link quantizeModel}, reported with the fraction done. */
export interface QuantizeProgress {
  /** What is happening. */
  phase: "preparing" | "quantizing";
  /** Fraction of the phase done, 0 to 1. */
  fraction: number;
}

/** Options of {@link quantizeModel}. */
export interface QuantizeOptions {
  /** The format asked for (matrices whose rows do not fit fall back, see `fitFormat`). */
  type: ComputeFormat;
  /** Strategy name (default `rtn`). */
  strategy?: StrategyName;
  /** Calibration statistics (`collectCalibration`); required by gptq, awq, mixed and auto. */
  calibration?: CalibrationData;
  /** Largest file size in bytes (mixed, auto). */
  targetBytes?: number;
  /** Largest relative perplexity increase, e.g. 0.02 (auto); needs `evaluate`. */
  maxPerplexityIncrease?: number;
  /** Scores a candidate (auto with a perplexity bound): its relative perplexity increase on held-out text. */
  evaluate?: (candidate: QuantizedModel) => number;
  /** Explicit format per matrix name, overriding the uniform plan (fallbacks still apply). */
  formats?: ReadonlyMap<string, ComputeFormat>;
  /** GPTQ settings. */
  gptq?: GptqOptions;
  /** AWQ settings. */
  awq?: AwqOptions;
  /** Progress callback. */
  onProgress?: (p: QuantizeProgress) => void;
}

/** What happened to one tensor. */
export interface TensorReport {
  /** Tensor name. */
  name: string;
  /** The format asked for (`F32` for vectors). */
  requested: string;
  /** The format written. */
  written: string;
  /** True when the rows did not fit the requested format's blocks. */
  fallback: boolean;
  /** How it was encoded (`copy` for vectors kept in F32). */
  method: EncodingMethod | "copy";
  /** Bytes of its data. */
  bytes: number;
}

/** A quantized model in memory, ready to write or to score. */
export interface QuantizedModel {
  /** Metadata of the output GGUF. */
  metadata: Record<string, GGUFWriteValue>;
  /** Tensors of the output GGUF, in file order. */
  tensors: GGUFWriteTensor[];
  /** Per-tensor report (fallbacks included). */
  report: TensorReport[];
  /** What the strategy decided. */
  notes: string[];
  /** The strategy that produced it (for auto: what auto chose, e.g. `auto→gptq`). */
  strategy: string;
  /** Size of the GGUF file it writes, in bytes. */
  fileBytes: number;
}

const ALIGNMENT = 32;

/** Bytes of a GGUF file with these metadata and tensors (header, tensor table and aligned data). */
export function ggufFileBytes(
  metadata: Record<string, GGUFWriteValue>,
  tensors: ReadonlyArray<{ name: string; shape: readonly number[]; bytes: number }>,
): number {
  // The header with an empty tensor of each name and rank has exactly the real header's length.
  const header = serializeGGUF({
    metadata,
    tensors: tensors.map((t) => ({
      name: t.name,
      type: GGMLType.F32,
      shape: t.shape.map(() => 0),
      data: new Uint8Array(0),
    })),
  }).length;
  return header + tensors.reduce((s, t) => s + Math.ceil(t.bytes / ALIGNMENT) * ALIGNMENT, 0);
}

/** Bytes the plan's file takes beyond its matrices: header, table and F32 vectors (with padding slack). */
function overheadBytes(model: FloatModel, formats: ReadonlyMap<string, ComputeFormat>): number {
  const all = model.tensors.map((t) => ({
    name: t.name,
    shape: t.shape,
    bytes: formats.has(t.name) ? 0 : t.values.length * 4,
  }));
  return ggufFileBytes(model.metadata, all) + ALIGNMENT * formats.size;
}

function planBytes(model: FloatModel, formats: ReadonlyMap<string, ComputeFormat>): number {
  let s = 0;
  for (const [name, type] of formats) {
    const [rows, cols] = (model.byName.get(name) as FloatTensor).shape;
    s += matrixBytes(type, rows, cols);
  }
  return s;
}

/**
 * Quantizes a model with a registered strategy and returns it in memory (write it with
 * {@link writeQuantizedModel}). Matrices whose rows do not fit the requested format fall back per
 * tensor (reported); vectors stay F32.
 */
export function quantizeModel(source: ModelSource | FloatModel, options: QuantizeOptions): QuantizedModel {
  const strategy = getStrategy(options.strategy ?? "rtn");
  if (strategy.needsCalibration && !options.calibration) {
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `strategy ${strategy.name} needs calibration text (--calibration FILE)`,
    );
  }
  if (!TYPE_INFO[options.type] || llamaFileType(options.type) === undefined)
    throw new RyzansteinError("INVALID_ARGUMENT", `${typeName(options.type)} is not a weight format`);
  if (options.gptq?.groupSize !== undefined) checkGptqGroupSize(options.gptq.groupSize);
  const model = "byName" in source ? cloneFloatModel(source) : readFloatModel(source);
  const formats = new Map<string, ComputeFormat>();
  for (const t of model.tensors) {
    if (!isQuantizable(t)) continue;
    formats.set(t.name, fitFormat(options.formats?.get(t.name) ?? options.type, t.shape[1]));
  }
  const overhead = overheadBytes(model, formats);
  let budgetBytes = planBytes(model, formats);
  if (options.targetBytes !== undefined) {
    budgetBytes = options.targetBytes - overhead;
    if (budgetBytes <= 0) {
      throw new RyzansteinError(
        "TARGET_UNREACHABLE",
        `a target of ${options.targetBytes} bytes cannot hold even the header and norms (${overhead} bytes)`,
      );
    }
  }
  const notes: string[] = [];
  const ctx: StrategyContext = {
    model,
    calibration: options.calibration,
    requested: options.type,
    formats,
    budgetBytes,
    gptq: options.gptq ?? {},
    awq: options.awq ?? {},
    notes,
  };
  options.onProgress?.({ phase: "preparing", fraction: 0 });
  let strategyName: string = strategy.name;
  if (strategy.name === "auto") {
    if (options.maxPerplexityIncrease !== undefined) return selectAutoByPerplexity(model, options);
    if (options.targetBytes === undefined) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        "strategy auto needs a target size or a maximum perplexity increase",
      );
    }
    strategyName = `auto→${selectAutoBySize(ctx)}`;
  } else strategy.prepare?.(ctx);
  options.onProgress?.({ phase: "preparing", fraction: 1 });

  const report: TensorReport[] = [];
  const tensors: GGUFWriteTensor[] = [];
  model.tensors.forEach((t, i) => {
    const type = formats.get(t.name);
    if (type === undefined) {
      const data = new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength);
      tensors.push({ name: t.name, type: GGMLType.F32, shape: t.shape, data });
      report.push({
        name: t.name,
        requested: "F32",
        written: "F32",
        fallback: false,
        method: "copy",
        bytes: data.length,
      });
    } else {
      const wanted = options.formats?.get(t.name) ?? options.type;
      const { data, method } = strategy.quantize(t, type, ctx);
      tensors.push({ name: t.name, type, shape: t.shape, data });
      report.push({
        name: t.name,
        requested: typeName(wanted),
        written: typeName(type),
        fallback: fitFormat(wanted, t.shape[1]) !== wanted,
        method,
        bytes: data.length,
      });
    }
    options.onProgress?.({ phase: "quantizing", fraction: (i + 1) / model.tensors.length });
  });
  const metadata = { ...model.metadata };
  const fileType = llamaFileType(options.type);
  if (fileType !== undefined) metadata["general.file_type"] = { type: GGUFValueType.UINT32, value: fileType };
  const fileBytes = ggufFileBytes(
    metadata,
    tensors.map((t) => ({ name: t.name, shape: t.shape, bytes: (t.data as Uint8Array).length })),
  );
  if (options.targetBytes !== undefined && fileBytes > options.targetBytes) {
    throw new RyzansteinError(
      "TARGET_UNREACHABLE",
      `the quantized file takes ${fileBytes} bytes, over the target of ${options.targetBytes}`,
    );
  }
  return { metadata, tensors, report, notes, strategy: strategyName, fileBytes };
}

/**
 * AutoSelector with a size target: the mixed planner spends the budget (encoded with GPTQ). Sets
 * `ctx.formats` and returns the strategy that encodes it. (The perplexity-bound mode is
 * {@link selectAutoByPerplexity}.)
 */
function selectAutoBySize(ctx: StrategyContext): StrategyName {
  getStrategy("mixed").prepare?.(ctx);
  ctx.notes.push("auto: size target → mixed formats, GPTQ encoding");
  return "mixed";
}

/** The strategies auto compares at each size rung, in order of preference on ties. */
const AUTO_CANDIDATES = ["mixed", "gptq", "awq"] as const;

/**
 * AutoSelector with a perplexity bound: walks the sizes of the uniform block formats from the
 * smallest up. At each size it builds one candidate per strategy of `AUTO_CANDIDATES` — per-tensor
 * formats from the mixed planner at exactly that size (GPTQ-encoded), uniform GPTQ and uniform AWQ
 * — and scores each with `evaluate`. The first size where a candidate stays within the bound wins,
 * and among that size's candidates the one with the smallest increase (earlier on ties). So auto
 * picks both the strategy and the per-tensor formats, at the smallest size that meets the bound.
 * Throws TARGET_UNREACHABLE with every score when no candidate does.
 */
function selectAutoByPerplexity(model: FloatModel, options: QuantizeOptions): QuantizedModel {
  const evaluate = options.evaluate;
  const bound = options.maxPerplexityIncrease as number;
  if (!evaluate)
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      "auto with a perplexity bound needs held-out text to evaluate on",
    );
  const rungs = quantTypes()
    .filter((t) => !typeName(t).toLowerCase().startsWith("tq"))
    .sort((a, b) => bitsPerWeight(a) - bitsPerWeight(b));
  const tried: string[] = [];
  for (const [i, type] of rungs.entries()) {
    options.onProgress?.({ phase: "preparing", fraction: i / rungs.length });
    let best: { q: QuantizedModel; increase: number; name: string } | undefined;
    for (const name of AUTO_CANDIDATES) {
      let q: QuantizedModel;
      try {
        q = quantizeModel(model, {
          type,
          strategy: name,
          calibration: options.calibration,
          formats: options.formats,
          gptq: options.gptq,
          awq: options.awq,
          targetBytes: options.targetBytes,
        });
      } catch (e) {
        // A strategy that cannot write this format (GPTQ without a column codec) or a candidate
        // over the size target is skipped; anything else is a real error.
        const code = (e as { code?: string }).code;
        if (code === "INVALID_ARGUMENT" || code === "TARGET_UNREACHABLE") continue;
        throw e;
      }
      const increase = evaluate(q);
      tried.push(`${typeName(type)} ${name}: +${(increase * 100).toFixed(2)}%`);
      if (increase <= bound && (!best || increase < best.increase)) best = { q, increase, name };
    }
    if (best) {
      options.onProgress?.({ phase: "preparing", fraction: 1 });
      const { q, name } = best;
      return {
        ...q,
        strategy: `auto→${name}`,
        notes: [
          ...q.notes,
          `auto: tried ${tried.join(", ")}; chose ${name} at the size of ${typeName(type)} (${q.fileBytes} bytes)`,
        ],
      };
    }
  }
  throw new RyzansteinError(
    "TARGET_UNREACHABLE",
    `no format keeps the perplexity increase within ${(bound * 100).toFixed(2)}% (${tried.join(", ")})`,
  );
}

/** The quantized model as a GGUF source in memory (to score it without writing a file). */
export function quantizedModelSource(q: QuantizedModel): ModelSource {
  return parseGGUF(serializeQuantizedModel(q));
}

/** Writes the quantized model atomically: nothing appears under `path` unless the write completes. */
export function writeQuantizedModel(
  q: QuantizedModel,
  path: string,
  onProgress?: (p: WriteProgress) => void,
): void {
  writeGGUF(path, { metadata: q.metadata, tensors: q.tensors }, onProgress);
}

/** The quantized model as GGUF bytes in memory. */
export function serializeQuantizedModel(q: QuantizedModel): Uint8Array {
  return serializeGGUF({ metadata: q.metadata, tensors: q.tensors });
}

/**
 * The quantized model with every matrix decoded back to F32 (exactly the values the file holds),
 * as a GGUF source in memory: scores the weights with the F32 kernels, whatever the format.
 */
export function decodedModelSource(q: QuantizedModel): ModelSource {
  return quantizedModelSource(quantizeModel(readFloatModel(quantizedModelSource(q)), { type: GGMLType.F32 }));
}

/**
 * The smallest GGUF file mixed or auto could make of this model: every matrix in the cheapest
 * block format whose blocks fit its rows, vectors in F32. A size target below it is unreachable
 * (checked before any calibration runs).
 */
export function minimumFileBytes(model: FloatModel): number {
  const candidates = mixedCandidates();
  return ggufFileBytes(
    model.metadata,
    model.tensors.map((t) => ({
      name: t.name,
      shape: t.shape,
      bytes: isQuantizable(t)
        ? Math.min(...candidates.map((c) => matrixBytes(fitFormat(c, t.shape[1]), t.shape[0], t.shape[1])))
        : t.values.length * 4,
    })),
  );
}
