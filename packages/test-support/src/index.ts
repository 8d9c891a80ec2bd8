export type { BatchedStepSequence, BatchedTrace } from "./decode.js";
export { greedyBatched, logSoftmax } from "./decode.js";
export type {
  LlamaCppDetokenizeOptions,
  LlamaCppGreedyOptions,
  LlamaCppLoadResult,
  LlamaCppStep,
  LlamaCppTokenizeOptions,
  LlamaCppTrace,
} from "./llamacpp.js";
export {
  disposeLlamaCpp,
  findRepoRoot,
  fixturesDir,
  llamaCppDetokenize,
  llamaCppGreedy,
  llamaCppLoadCheck,
  llamaCppTokenize,
} from "./llamacpp.js";
export type { RandomLlamaSpec } from "./random-model.js";
export { gaussian, syntheticLlamaVocab, writeRandomLlamaGGUF } from "./random-model.js";
