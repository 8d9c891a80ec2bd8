/**
 * `@ryzanstein/training`: backward pass and full training of Llama-architecture models on CPU
 * (native GEMM and attention kernels, TypeScript element-wise ops, float64 reference for gradient
 * checks), AdamW, packed-window data, atomic checkpoints with exact resume, GGUF export.
 *
 * @packageDocumentation
 */
export { type BaselineResult, ngramBaselines } from "./baselines.js";
export { type ChatExamples, chatExamples, parseChatJsonl } from "./chat-data.js";
export { type Checkpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
export { epochOrder, fillBatch, makeWindows, type WindowSet } from "./data.js";
export { type ExportOptions, type ExportType, exportGGUF } from "./export.js";
export {
  type FrozenModel,
  initParams,
  type LinearHook,
  type ModelShape,
  normalizeShape,
  type ParamSpec,
  paramLayout,
  seededRandom,
  TrainGraph,
  type TrainGraphOptions,
} from "./model.js";
export {
  type AttentionShape,
  crossEntropy,
  embedding,
  embeddingBackward,
  type FloatArray,
  type FrozenMatrix,
  nativeOps,
  referenceOps,
  rmsNorm,
  rmsNormBackward,
  rope,
  swiglu,
  swigluBackward,
  type TrainOps,
} from "./ops.js";
export { AdamW, type AdamWOptions, clipGradNorm, learningRate } from "./optim.js";
export { type LossSeries, lossCurveSvg } from "./svg.js";
export {
  type TrainHyperParams,
  type TrainOptions,
  type TrainProgress,
  type TrainResult,
  train,
} from "./train.js";
