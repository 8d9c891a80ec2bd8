import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { Isa } from "@ryzanstein/kernels-native";
import { bpeMetadata, createTokenizerFromGGUF, trainBpe } from "@ryzanstein/tokenizers";
import {
  type ExportType,
  type ModelShape,
  makeWindows,
  ngramBaselines,
  type TrainHyperParams,
  type TrainProgress,
  train,
} from "@ryzanstein/training";
import cliProgress from "cli-progress";

/** Options of `ryzanstein train`. */
export interface TrainCommandOptions {
  /** JSON config: `{ name?, license?, model, tokenizer: { vocabSize }, training }`. */
  config: string;
  /** Plain UTF-8 text to train on. */
  data: string;
  /** Output GGUF. */
  out: string;
  /** Checkpoint path (default `<out>.ckpt`). */
  checkpoint?: string;
  /** Override `training.steps`. */
  steps?: number;
  /** Native threads. */
  threads?: number;
  /** Kernel variant. */
  isa?: Isa;
  /** Matrix format of the export. */
  exportType?: ExportType;
  /** Stop after this many steps (checkpointed), as if interrupted. */
  stopAfter?: number;
}

/** The training config file. */
export interface TrainConfigFile {
  /** `general.name` of the output. */
  name?: string;
  /** `general.license` of the output. */
  license?: string;
  /** Model shape; `vocabSize` comes from the tokenizer section. */
  model: Omit<ModelShape, "vocabSize">;
  /** Byte-level BPE trained on the data. */
  tokenizer: { vocabSize: number };
  /** Hyper-parameters. */
  training: TrainHyperParams;
}

function readConfig(path: string): TrainConfigFile {
  let cfg: TrainConfigFile;
  try {
    cfg = JSON.parse(readFileSync(path, "utf8")) as TrainConfigFile;
  } catch (cause) {
    throw new RyzansteinError("INVALID_ARGUMENT", `cannot read config ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (
    !cfg ||
    typeof cfg.model !== "object" ||
    typeof cfg.training !== "object" ||
    typeof cfg.tokenizer !== "object"
  ) {
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `config ${path} needs "model", "tokenizer" and "training" objects`,
    );
  }
  return cfg;
}

/** A progress bar with loss, tokens/s and ETA on a terminal; a line every 10 steps otherwise. */
export function reporter(steps: number, label = "train"): { update(p: TrainProgress): void; stop(): void } {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {value}/{total} loss {loss} | {tps} tok/s | ETA {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(steps, 0, { loss: "-", tps: "-" });
    return {
      update: (p) => bar.update(p.step, { loss: p.loss.toFixed(3), tps: Math.round(p.tokensPerSecond) }),
      stop: () => bar.stop(),
    };
  }
  return {
    update(p) {
      if (p.step % 10 === 0 || p.step === p.steps || p.evalLoss !== undefined) {
        const ev = p.evalLoss !== undefined ? ` eval ${p.evalLoss.toFixed(4)}` : "";
        process.stderr.write(
          `step ${p.step}/${p.steps} loss ${p.loss.toFixed(4)}${ev} lr ${p.lr.toExponential(2)} |g| ${p.gradNorm.toFixed(2)} ${Math.round(p.tokensPerSecond)} tok/s ETA ${Math.round(p.etaSeconds)}s\n`,
        );
      }
    },
    stop() {},
  };
}

/**
 * `ryzanstein train`: trains a byte-level BPE tokenizer and a Llama model from scratch on a text
 * file, then writes the GGUF, `<out>.loss.svg` and `<out>.metrics.json` (held-out loss and bits per
 * byte of the model and of unigram/bigram baselines on the same split).
 */
export function trainCommand(o: TrainCommandOptions, out: NodeJS.WritableStream = process.stdout): void {
  const cfg = readConfig(o.config);
  if (!existsSync(o.data))
    throw new RyzansteinError("IO_ERROR", `data file not found: ${o.data}`, { file: o.data });
  const text = readFileSync(o.data, "utf8");
  if (text.trim().length === 0) throw new RyzansteinError("INVALID_ARGUMENT", `data file ${o.data} is empty`);
  const t0 = Date.now();
  const bpe = trainBpe(text, { vocabSize: cfg.tokenizer.vocabSize });
  const tokenizer = bpeMetadata(bpe);
  const tok = createTokenizerFromGGUF(tokenizer);
  const tokens = Int32Array.from(tok.encode(text));
  const bpeSeconds = (Date.now() - t0) / 1000;
  process.stderr.write(
    `tokenizer: ${bpe.tokens.length} tokens, ${tokens.length} tokens of data (${(Buffer.byteLength(text) / tokens.length).toFixed(2)} bytes/token), ${bpeSeconds.toFixed(1)} s\n`,
  );
  const training = { ...cfg.training, ...(o.steps ? { steps: o.steps } : {}) };
  const model: ModelShape = { ...cfg.model, vocabSize: bpe.tokens.length };
  const bar = reporter(training.steps);
  let result: ReturnType<typeof train>;
  try {
    result = train({
      model,
      training,
      tokens,
      tokenizer,
      out: o.out,
      exportType: o.exportType,
      name: cfg.name,
      metadata: cfg.license ? { "general.license": cfg.license } : undefined,
      checkpoint: o.checkpoint ?? `${o.out}.ckpt`,
      threads: o.threads,
      isa: o.isa,
      stopAfter: o.stopAfter,
      onProgress: (p) => bar.update(p),
    });
  } finally {
    bar.stop();
  }
  if (result.steps < training.steps) {
    out.write(
      `stopped after ${result.steps} of ${training.steps} steps; run the same command again to resume\n`,
    );
    return;
  }
  // baselines and bits per byte on exactly the held-out targets the model was scored on
  const { eval: evalSet } = makeWindows(tokens, training.seqLen, training.evalFraction ?? 0.02);
  const tokenBytes = bpe.tokens.map((t, i) => (i >= bpe.eosId ? 0 : Array.from(t).length));
  const base = ngramBaselines(evalSet, bpe.tokens.length, tokenBytes);
  const bpb = (nats: number) => nats / Math.LN2 / base.bytes;
  const metrics = {
    parameters: result.parameters,
    steps: result.steps,
    seconds: Math.round(result.seconds),
    trainTokens: tokens.length,
    heldOutTokens: base.tokens,
    heldOutBytes: base.bytes,
    heldOutLoss: result.evalLoss,
    bitsPerByte: {
      model: bpb(result.evalLoss * base.tokens),
      unigram: bpb(base.unigramNats),
      bigram: bpb(base.bigramNats),
    },
    finalTrainLoss: result.lossHistory[result.lossHistory.length - 1],
    evalHistory: result.evalHistory,
  };
  const metricsPath = `${o.out.replace(/\.gguf$/i, "")}.metrics.json`;
  writeFileSync(`${metricsPath}.tmp`, `${JSON.stringify(metrics, null, 2)}\n`);
  renameSync(`${metricsPath}.tmp`, metricsPath);
  out.write(
    `wrote ${o.out}: ${result.parameters} parameters, ${result.steps} steps in ${Math.round(result.seconds)} s; held-out loss ${result.evalLoss.toFixed(4)} nats/token, ` +
      `bits/byte model ${metrics.bitsPerByte.model.toFixed(3)}, unigram ${metrics.bitsPerByte.unigram.toFixed(3)}, bigram ${metrics.bitsPerByte.bigram.toFixed(3)}\n`,
  );
}
