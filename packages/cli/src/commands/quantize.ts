import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { type ComputeFormat, RyzansteinError, typeName } from "@ryzanstein/core-tensor";
import { openModelFile } from "@ryzanstein/engine";
import {
  type CalibrationData,
  checkGptqGroupSize,
  collectCalibration,
  decodedModelSource,
  getStrategy,
  minimumFileBytes,
  QuantizationValidator,
  quantizeModel,
  readFloatModel,
  writeQuantizedModel,
} from "@ryzanstein/quant-strategies";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";
import { typeOption } from "../options.js";
import { progressBar } from "../progress.js";

/** Options of `ryzanstein quantize`. */
export interface QuantizeCommandOptions {
  type: string;
  strategy: string;
  calibration?: string;
  targetSize?: number;
  maxPplIncrease?: number;
  ctx: number;
  actOrder?: boolean;
  groupSize?: number;
  threads?: number;
}

/** Parses `2%` or `0.02` as a fraction. */
export function parsePercent(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(value);
  if (!m) throw new RyzansteinError("INVALID_ARGUMENT", `cannot read a percentage from '${value}' (try 2%)`);
  return m[2] ? Number(m[1]) / 100 : Number(m[1]);
}

/** Reads a calibration text file, with a typed error when it is missing or empty. */
function readText(path: string, what: string): string {
  if (!existsSync(path)) throw new RyzansteinError("INVALID_ARGUMENT", `${what} file not found: ${path}`);
  const text = readFileSync(path, "utf8");
  if (text.trim() === "") throw new RyzansteinError("INSUFFICIENT_DATA", `${what} file ${path} is empty`);
  return text;
}

/**
 * `ryzanstein quantize IN OUT --type T [--strategy S]`: re-encodes a model's matrices with a
 * quantization strategy. Calibration-based strategies run the model on `--calibration` text; with
 * `--max-ppl-increase`, the last quarter of that text is held out to measure perplexity. The
 * output appears under its final name only when complete.
 */
export function quantizeCommand(
  input: string,
  output: string,
  o: QuantizeCommandOptions,
  log: NodeJS.WritableStream = process.stderr,
): void {
  const type: ComputeFormat = typeOption(o.type);
  const strategy = getStrategy(o.strategy);
  if (resolve(input) === resolve(output))
    throw new RyzansteinError("INVALID_ARGUMENT", "the output must not overwrite the input");
  if (
    (o.targetSize !== undefined || o.maxPplIncrease !== undefined) &&
    !["mixed", "auto"].includes(strategy.name)
  )
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      "--target-size and --max-ppl-increase apply to --strategy mixed or auto",
    );
  if (o.maxPplIncrease !== undefined && strategy.name !== "auto")
    throw new RyzansteinError("INVALID_ARGUMENT", "--max-ppl-increase applies to --strategy auto");
  if (o.groupSize !== undefined) {
    if (!["gptq", "mixed", "auto"].includes(strategy.name))
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        "--group-size applies to strategies that run GPTQ (gptq, mixed, auto)",
      );
    checkGptqGroupSize(o.groupSize);
  }
  if (strategy.needsCalibration && !o.calibration)
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `strategy ${strategy.name} needs --calibration FILE (plain text)`,
    );

  const source = openModelFile(input);
  if (o.targetSize !== undefined) {
    const minimum = minimumFileBytes(readFloatModel(source));
    if (o.targetSize < minimum) {
      throw new RyzansteinError(
        "TARGET_UNREACHABLE",
        `a target of ${o.targetSize} bytes is below the smallest file this model can make (${minimum} bytes, every matrix in its smallest format)`,
      );
    }
  }
  let calibration: CalibrationData | undefined;
  let held: number[] = [];
  if (o.calibration) {
    const tokenizer = createTokenizerFromGGUF(source.metadata);
    const tokens = tokenizer.encode(readText(o.calibration, "calibration"));
    let calTokens = tokens;
    if (o.maxPplIncrease !== undefined) {
      // Hold the last quarter out: the perplexity check must not score text the statistics saw.
      const cut = Math.floor(tokens.length * 0.75);
      calTokens = tokens.slice(0, cut);
      held = tokens.slice(cut);
      if (held.length < 2 * o.ctx) {
        throw new RyzansteinError(
          "INSUFFICIENT_DATA",
          `calibration text is too short: its held-out quarter has ${held.length} tokens, --max-ppl-increase needs ${2 * o.ctx} (ctx ${o.ctx})`,
        );
      }
    }
    const bar = progressBar("calibrating");
    try {
      calibration = collectCalibration(source, calTokens, {
        ctx: o.ctx,
        threads: o.threads,
        minTokens: Math.min(o.ctx, 128),
        onProgress: (f) => bar.update(f),
      });
    } finally {
      bar.stop();
    }
  }
  const validator =
    o.maxPplIncrease !== undefined
      ? new QuantizationValidator(source, held, { ctx: o.ctx, threads: o.threads })
      : undefined;
  const bar = progressBar(`quantizing (${strategy.name})`);
  let q: ReturnType<typeof quantizeModel>;
  try {
    q = quantizeModel(source, {
      type,
      strategy: strategy.name,
      calibration,
      targetBytes: o.targetSize,
      maxPerplexityIncrease: o.maxPplIncrease,
      // Candidates are scored with their matrices decoded to F32 (the file's exact values), so every
      // format can be scored whether or not the native kernels compute with it.
      evaluate: validator ? (c) => validator.validate(decodedModelSource(c)).increase : undefined,
      gptq: { actOrder: o.actOrder ?? false, groupSize: o.groupSize },
      onProgress: (p) => bar.update(p.phase === "preparing" ? 0.5 * p.fraction : 0.5 + 0.5 * p.fraction),
    });
  } finally {
    bar.stop();
  }
  const writeBar = progressBar("writing");
  try {
    writeQuantizedModel(q, output, (p) => writeBar.update(p.bytesDone / Math.max(1, p.bytesTotal)));
  } finally {
    writeBar.stop();
  }
  for (const r of q.report.filter((t) => t.fallback))
    log.write(`note: ${r.name} written as ${r.written} (rows do not fit ${r.requested} blocks)\n`);
  for (const n of q.notes) log.write(`${n}\n`);
  const counts = new Map<string, number>();
  for (const r of q.report) if (r.method !== "copy") counts.set(r.written, (counts.get(r.written) ?? 0) + 1);
  const mix = [...counts].map(([t, c]) => `${c}×${t}`).join(", ");
  log.write(
    `wrote ${output}: ${q.fileBytes} bytes (${(q.fileBytes / 2 ** 20).toFixed(2)} MiB), ${typeName(type)} requested via ${q.strategy} (matrices: ${mix})\n`,
  );
}
