/** The training loop: full training from random init with AdamW over packed windows. */
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { Isa } from "@ryzanstein/kernels-native";
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
import { epochOrder, fillBatch, makeWindows, type WindowSet } from "./data.js";
import { type ExportType, exportGGUF } from "./export.js";
import { initParams, type ModelShape, normalizeShape, paramLayout, TrainGraph } from "./model.js";
import { nativeOps } from "./ops.js";
import { AdamW, clipGradNorm, learningRate } from "./optim.js";
import { lossCurveSvg } from "./svg.js";

/** Hyper-parameters of a training run (the `training` section of a config file). */
export interface TrainHyperParams {
  /** Tokens per window. */
  seqLen: number;
  /** Windows per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Optimizer steps. */
  steps: number;
  /** Peak learning rate. */
  lr: number;
  /** Final learning rate of the cosine schedule (default lr/10). */
  minLr?: number;
  /** Warmup steps (default 5% of steps). */
  warmup?: number;
  /** Decoupled weight decay on matrices (default 0.1). */
  weightDecay?: number;
  /** AdamW β₂ (default 0.95). */
  beta2?: number;
  /** Global gradient-norm clip (default 1; 0 disables). */
  clip?: number;
  /** Fraction of the token stream held out for evaluation (default 0.02). */
  evalFraction?: number;
  /** Evaluate every this many steps (default: 10 times per run). */
  evalEvery?: number;
  /** Held-out windows per periodic evaluation (default all; the final evaluation always uses all). */
  evalWindows?: number;
  /** Seed of initialisation and data order (default 1). */
  seed?: number;
}

/** Progress reported after each optimizer step. */
export interface TrainProgress {
  /** Steps done. */
  step: number;
  /** Total steps. */
  steps: number;
  /** Mean training loss (nats/token) of this step. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Gradient norm before clipping. */
  gradNorm: number;
  /** Training tokens per second since this process started. */
  tokensPerSecond: number;
  /** Estimated seconds to finish. */
  etaSeconds: number;
  /** Held-out loss, when this step evaluated. */
  evalLoss?: number;
}

/** Options of {@link train}. */
export interface TrainOptions {
  /** Model shape (random initialisation). */
  model: ModelShape;
  /** Hyper-parameters. */
  training: TrainHyperParams;
  /** The tokenised training text. */
  tokens: Int32Array;
  /** Tokenizer metadata written into the GGUF. */
  tokenizer: Record<string, unknown>;
  /** Output GGUF path; the loss curve goes to `<out>.loss.svg`. Omit to skip the export. */
  out?: string;
  /** Matrix format of the export (default f16). */
  exportType?: ExportType;
  /** `general.name` of the export. */
  name?: string;
  /** Extra GGUF metadata. */
  metadata?: Record<string, string>;
  /** Checkpoint file (written atomically every `checkpointEvery` steps and at the end). */
  checkpoint?: string;
  /** Steps between checkpoints (default 100). */
  checkpointEvery?: number;
  /** Resume from `checkpoint` if it exists (default true when `checkpoint` is set). */
  resume?: boolean;
  /** Stop (as if interrupted, after checkpointing) once this many steps are done. */
  stopAfter?: number;
  /** Native threads (default: all cores). */
  threads?: number;
  /** Kernel variant. */
  isa?: Isa;
  /** Called after every step. */
  onProgress?: (p: TrainProgress) => void;
}

/** Outcome of {@link train}. */
export interface TrainResult {
  /** Final parameters (flat). */
  params: Float32Array;
  /** Training loss per step (index = step - 1). */
  lossHistory: number[];
  /** Held-out evaluations as `[step, loss]`. */
  evalHistory: [number, number][];
  /** Final held-out loss over the whole split (nats/token). */
  evalLoss: number;
  /** Held-out tokens scored. */
  evalTokens: number;
  /** Steps done (less than `steps` when stopped by `stopAfter`). */
  steps: number;
  /** Wall-clock seconds of this call. */
  seconds: number;
  /** Parameter count. */
  parameters: number;
}

/** Evaluates mean loss (nats/token) over windows of `set` with `graph` (no gradients). */
function evaluate(
  graph: TrainGraph<Float32Array>,
  params: Float32Array,
  set: WindowSet,
  limit?: number,
): { loss: number; tokens: number } {
  const B = graph.batch;
  const S = graph.seq;
  const count = Math.min(set.starts.length, limit ?? set.starts.length);
  const inputs = new Int32Array(B * S);
  const targets = new Int32Array(B * S);
  let total = 0;
  let tokens = 0;
  for (let i = 0; i < count; i += B) {
    const ids = Array.from({ length: B }, (_, j) => Math.min(i + j, count - 1));
    fillBatch(set, ids, inputs, targets);
    for (let j = 0; j < B; j++) if (i + j >= count) targets.fill(-1, j * S, (j + 1) * S);
    total += graph.step(params, inputs, targets);
    tokens += Math.min(B, count - i) * S;
  }
  return { loss: total / tokens, tokens };
}

/**
 * Trains a model from scratch. Deterministic for a given seed, thread count and ISA; with a
 * checkpoint, an interrupted run resumes to the same loss curve as an uninterrupted one.
 *
 * @throws RyzansteinError `INVALID_ARGUMENT` for bad hyper-parameters or too little data;
 *   `ABORTED` when the loss or gradient becomes non-finite (the last checkpoint is kept).
 */
export function train(o: TrainOptions): TrainResult {
  const t0 = Date.now();
  const shape = normalizeShape(o.model);
  const h = o.training;
  for (const k of ["seqLen", "batchSize", "steps"] as const) {
    if (!Number.isInteger(h[k]) || h[k] <= 0)
      throw new RyzansteinError("INVALID_ARGUMENT", `training.${k} must be a positive integer`);
  }
  if (!(h.lr > 0)) throw new RyzansteinError("INVALID_ARGUMENT", "training.lr must be positive");
  const accum = h.gradAccum ?? 1;
  const seed = h.seed ?? 1;
  const warmup = h.warmup ?? Math.max(1, Math.round(h.steps * 0.05));
  const minLr = h.minLr ?? h.lr / 10;
  const clip = h.clip ?? 1;
  const evalEvery = h.evalEvery ?? Math.max(1, Math.round(h.steps / 10));
  const { train: trainSet, eval: evalSet } = makeWindows(o.tokens, h.seqLen, h.evalFraction ?? 0.02);
  for (let i = 0; i < o.tokens.length; i++) {
    if (o.tokens[i] < 0 || o.tokens[i] >= shape.vocabSize) {
      throw new RyzansteinError(
        "OUT_OF_BOUNDS",
        `token ${o.tokens[i]} at ${i} is outside the vocabulary of ${shape.vocabSize}`,
      );
    }
  }

  const { specs, total } = paramLayout(shape);
  const decay = new Uint8Array(total);
  for (const p of specs) if (!p.isNorm) decay.fill(1, p.offset, p.offset + p.size);
  let params = initParams(shape, seed);
  const opt = new AdamW(total, decay, { weightDecay: h.weightDecay ?? 0.1, beta2: h.beta2 ?? 0.95 });
  let step = 0;
  let lossHistory: number[] = [];
  let evalHistory: [number, number][] = [];
  const resume = o.resume ?? o.checkpoint !== undefined;
  if (o.checkpoint && resume && existsSync(o.checkpoint)) {
    const c = loadCheckpoint(o.checkpoint);
    if (c.params.length !== total) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `checkpoint ${o.checkpoint} has ${c.params.length} parameters, the model ${total}`,
      );
    }
    params = c.params;
    opt.m.set(c.m);
    opt.v.set(c.v);
    step = c.state.step as number;
    opt.t = c.state.adamT as number;
    lossHistory = c.state.lossHistory as number[];
    evalHistory = c.state.evalHistory as [number, number][];
  }
  const save = () => {
    if (!o.checkpoint) return;
    const ckpt: Checkpoint = {
      state: { step, adamT: opt.t, lossHistory, evalHistory, model: shape, training: h },
      params,
      m: opt.m,
      v: opt.v,
    };
    saveCheckpoint(o.checkpoint, ckpt);
  };

  const ops = nativeOps({ isa: o.isa, threads: o.threads });
  try {
    const graph = new TrainGraph(shape, h.batchSize, h.seqLen, ops);
    const grads = new Float32Array(total);
    const inputs = new Int32Array(h.batchSize * h.seqLen);
    const targets = new Int32Array(h.batchSize * h.seqLen);
    const perEpoch = trainSet.starts.length;
    const perStep = h.batchSize * accum;
    let tokensThisRun = 0;
    const runStart = Date.now();
    const stopAt = Math.min(h.steps, o.stopAfter ?? h.steps);
    let order = epochOrder(perEpoch, seed, 0);
    let orderEpoch = 0;
    const windowAt = (g: number) => {
      const epoch = Math.floor(g / perEpoch);
      if (epoch !== orderEpoch) {
        order = epochOrder(perEpoch, seed, epoch);
        orderEpoch = epoch;
      }
      return order[g % perEpoch];
    };
    while (step < stopAt) {
      grads.fill(0);
      let lossSum = 0;
      for (let a = 0; a < accum; a++) {
        const base = (step * accum + a) * h.batchSize;
        const ids = Array.from({ length: h.batchSize }, (_, j) => windowAt(base + j));
        fillBatch(trainSet, ids, inputs, targets);
        lossSum += graph.step(params, inputs, targets, grads, 1 / (perStep * h.seqLen));
      }
      const loss = lossSum / (perStep * h.seqLen);
      const gradNorm = clipGradNorm(grads, clip);
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        throw new RyzansteinError(
          "ABORTED",
          `training diverged at step ${step + 1}: loss ${loss}, gradient norm ${gradNorm}; lower the learning rate (${h.lr})` +
            (o.checkpoint ? `; the last good checkpoint ${o.checkpoint} (step ${step}) is kept` : ""),
        );
      }
      const lr = learningRate(step, h.steps, h.lr, warmup, minLr);
      opt.step(params, grads, lr);
      step++;
      lossHistory.push(loss);
      tokensThisRun += perStep * h.seqLen;
      let evalLoss: number | undefined;
      if (step % evalEvery === 0 && step < h.steps) {
        evalLoss = evaluate(graph, params, evalSet, h.evalWindows).loss;
        evalHistory.push([step, evalLoss]);
      }
      const secs = (Date.now() - runStart) / 1000;
      const tps = tokensThisRun / Math.max(secs, 1e-3);
      o.onProgress?.({
        step,
        steps: h.steps,
        loss,
        lr,
        gradNorm,
        tokensPerSecond: tps,
        etaSeconds: ((h.steps - step) * perStep * h.seqLen) / Math.max(tps, 1e-9),
        evalLoss,
      });
      if (o.checkpoint && (step % (o.checkpointEvery ?? 100) === 0 || step === stopAt)) save();
    }
    let finalEval = { loss: Number.NaN, tokens: 0 };
    if (step >= h.steps) {
      finalEval = evaluate(graph, params, evalSet);
      if (evalHistory.length === 0 || evalHistory[evalHistory.length - 1][0] !== step)
        evalHistory.push([step, finalEval.loss]);
      if (o.out) {
        exportGGUF(o.out, {
          shape,
          params,
          tokenizer: o.tokenizer,
          type: o.exportType,
          name: o.name,
          metadata: o.metadata,
        });
        const svg = lossCurveSvg(
          [
            { label: "train loss", color: "#1f77b4", points: lossHistory.map((l, i) => [i + 1, l]) },
            { label: "held-out loss", color: "#d62728", points: evalHistory },
          ],
          `training loss (nats/token) — ${o.name ?? "model"}`,
        );
        const svgPath = `${o.out.replace(/\.gguf$/i, "")}.loss.svg`;
        writeFileSync(`${svgPath}.tmp`, svg);
        renameSync(`${svgPath}.tmp`, svgPath);
      }
    }
    return {
      params,
      lossHistory,
      evalHistory,
      evalLoss: finalEval.loss,
      evalTokens: finalEval.tokens,
      steps: step,
      seconds: (Date.now() - t0) / 1000,
      parameters: total,
    };
  } finally {
    ops.kernels.dispose();
  }
}
