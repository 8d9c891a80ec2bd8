/** LoRA fine-tuning of a frozen base: AdamW on the adapters only, held-out loss before and after. */

import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { Isa } from "@ryzanstein/kernels-native";
import {
  AdamW,
  clipGradNorm,
  epochOrder,
  type FrozenModel,
  fillBatch,
  learningRate,
  type ModelShape,
  makeWindows,
  nativeOps,
  TrainGraph,
  type TrainHyperParams,
  type TrainProgress,
  type WindowSet,
} from "@ryzanstein/training";
import { LoraAdapters } from "./adapters.js";
import type { BaseModel } from "./base.js";
import type { LoraConfig } from "./config.js";

/** Options of {@link finetune}. */
export interface FinetuneOptions {
  /** The frozen base. */
  base: BaseModel;
  /** Tokenised training text (the last `evalFraction` is held out). */
  tokens: Int32Array;
  /**
   * Which tokens are trained on as targets (1) and which are context only (0), e.g. the assistant
   * turns of chat records ({@link "@ryzanstein/training".chatExamples}). Default: every token.
   */
  lossMask?: Uint8Array;
  /**
   * Activation checkpointing per layer (see `TrainGraphOptions`). Default: on when the activations
   * of all layers would exceed 256 MiB.
   */
  checkpointLayers?: boolean;
  /** Adapter configuration. */
  lora: LoraConfig;
  /** Hyper-parameters (weight decay defaults to 0 for adapters). */
  training: TrainHyperParams;
  /** Native threads. */
  threads?: number;
  /** Kernel variant. */
  isa?: Isa;
  /** Called after every step. */
  onProgress?: (p: TrainProgress) => void;
}

/** Outcome of {@link finetune}. */
export interface FinetuneResult {
  /** The trained adapters (F32, native ops released). */
  adapters: LoraAdapters<Float32Array>;
  /** Training loss per step. */
  lossHistory: number[];
  /** Held-out loss (nats/token) of the base alone. */
  evalBefore: number;
  /** Held-out loss with the adapters. */
  evalAfter: number;
  /** Wall-clock seconds. */
  seconds: number;
  /** Whether activation checkpointing was on. */
  checkpointLayers: boolean;
}

/** Bytes of one layer's activations for `rows` tokens in windows of `seq` (what checkpointing saves). */
export function layerActivationBytes(shape: ModelShape, rows: number, seq: number): number {
  const hd = shape.dim / shape.nHeads;
  const perRow = 3 * shape.dim + 2 * shape.nHeads * hd + 2 * shape.nKvHeads * hd + 3 * shape.ffnDim;
  return 4 * (rows * perRow + (rows / seq) * shape.nHeads * seq * seq);
}

function evaluate(graph: TrainGraph<Float32Array>, params: FrozenModel, set: WindowSet): number {
  const B = graph.batch;
  const S = graph.seq;
  const inputs = new Int32Array(B * S);
  const targets = new Int32Array(B * S);
  let total = 0;
  let count = 0;
  for (let i = 0; i < set.starts.length; i += B) {
    const ids = Array.from({ length: B }, (_, j) => Math.min(i + j, set.starts.length - 1));
    fillBatch(set, ids, inputs, targets);
    for (let j = 0; j < B; j++) if (i + j >= set.starts.length) targets.fill(-1, j * S, (j + 1) * S);
    total += graph.step(params, inputs, targets);
    for (const t of targets) if (t >= 0) count++;
  }
  return total / Math.max(count, 1);
}

/**
 * Trains LoRA adapters on a frozen base. Deterministic for a seed, thread count and ISA.
 *
 * @throws RyzansteinError `INVALID_ARGUMENT` for a bad LoRA config (rank 0, unknown module) or too
 *   little data; `ABORTED` when the loss becomes non-finite.
 */
export function finetune(o: FinetuneOptions): FinetuneResult {
  const t0 = Date.now();
  const h = o.training;
  const { train: trainSet, eval: evalSet } = makeWindows(
    o.tokens,
    h.seqLen,
    h.evalFraction ?? 0.1,
    o.lossMask,
  );
  for (const t of o.tokens) {
    if (t < 0 || t >= o.base.shape.vocabSize) {
      throw new RyzansteinError(
        "OUT_OF_BOUNDS",
        `token ${t} is outside the vocabulary of ${o.base.shape.vocabSize}`,
      );
    }
  }
  const ops = nativeOps({ threads: o.threads, isa: o.isa });
  try {
    const adapters = new LoraAdapters(o.base.shape, o.lora, ops, h.batchSize * h.seqLen, h.seed ?? 1);
    const rows = h.batchSize * h.seqLen;
    const checkpointLayers =
      o.checkpointLayers ??
      layerActivationBytes(o.base.shape, rows, h.seqLen) * o.base.shape.nLayers > 256 * 2 ** 20;
    const graph = new TrainGraph(o.base.shape, h.batchSize, h.seqLen, ops, adapters, { checkpointLayers });
    const params = o.base.weights;
    const dropout = adapters.dropout;
    adapters.dropout = 0;
    // B = 0 at start: the adapters add nothing, so this is the base's held-out loss
    const evalBefore = evaluate(graph, params, evalSet);
    const opt = new AdamW(adapters.params.length, new Uint8Array(adapters.params.length).fill(1), {
      weightDecay: h.weightDecay ?? 0,
      beta2: h.beta2 ?? 0.999,
    });
    const accum = h.gradAccum ?? 1;
    const warmup = h.warmup ?? Math.max(1, Math.round(h.steps * 0.05));
    const inputs = Array.from({ length: accum }, () => new Int32Array(rows));
    const targets = Array.from({ length: accum }, () => new Int32Array(rows));
    const perEpoch = trainSet.starts.length;
    const lossHistory: number[] = [];
    const seed = h.seed ?? 1;
    const start = Date.now();
    for (let step = 0; step < h.steps; step++) {
      adapters.grads.fill(0);
      adapters.dropout = dropout;
      let lossSum = 0;
      // the loss is the mean over the step's target tokens (masked ones excluded), so count first
      let count = 0;
      for (let a = 0; a < accum; a++) {
        const base = (step * accum + a) * h.batchSize;
        const ids = Array.from({ length: h.batchSize }, (_, j) => {
          const g = base + j;
          return epochOrder(perEpoch, seed, Math.floor(g / perEpoch))[g % perEpoch];
        });
        fillBatch(trainSet, ids, inputs[a], targets[a]);
        for (const t of targets[a]) if (t >= 0) count++;
      }
      const scale = 1 / Math.max(count, 1);
      for (let a = 0; a < accum; a++)
        lossSum += graph.step(params, inputs[a], targets[a], undefined, scale, true);
      adapters.dropout = 0;
      const loss = lossSum * scale;
      const gradNorm = clipGradNorm(adapters.grads, h.clip ?? 1);
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        throw new RyzansteinError(
          "ABORTED",
          `fine-tuning diverged at step ${step + 1}: loss ${loss}; lower the learning rate`,
        );
      }
      const lr = learningRate(step, h.steps, h.lr, warmup, h.minLr ?? h.lr / 10);
      opt.step(adapters.params, adapters.grads, lr);
      lossHistory.push(loss);
      const secs = (Date.now() - start) / 1000;
      const tps = ((step + 1) * accum * rows) / Math.max(secs, 1e-3);
      o.onProgress?.({
        step: step + 1,
        steps: h.steps,
        loss,
        lr,
        gradNorm,
        tokensPerSecond: tps,
        etaSeconds: ((h.steps - step - 1) * accum * rows) / tps,
      });
    }
    const evalAfter = evaluate(graph, params, evalSet);
    return {
      adapters,
      lossHistory,
      evalBefore,
      evalAfter,
      seconds: (Date.now() - t0) / 1000,
      checkpointLayers,
    };
  } finally {
    ops.kernels.dispose();
  }
}
