export type { AdapterWeights, LinearAdapter } from "./adapters.js";
export { withAdapter } from "./adapters.js";
export type { BenchmarkOptions, BenchmarkResult } from "./bench.js";
export { benchmarkModel, meanStddev } from "./bench.js";
export type { ArchitectureSpec, ModelConfig } from "./config.js";
export { ARCHITECTURES, readModelConfig } from "./config.js";
export type {
  FinishReason,
  GeneratedToken,
  GenerateOptions,
  GenerationResult,
  GenerationTokenizer,
} from "./generate.js";
export { generateTokens } from "./generate.js";
export type { GenerateRequest, LoadModelOptions } from "./language-model.js";
export { Generation, LanguageModel, loadModel } from "./language-model.js";
export type { AttentionNumerics, KVCacheType, LogitsMode, ModelOptions } from "./model.js";
export { Context, KV_CACHE_TYPES, Model } from "./model.js";
export type { BatchOutput, BatchSequence } from "./paged.js";
export { BatchRunner, PagedKvCache } from "./paged.js";
export type { SamplingOptions, TokenLogprob } from "./sampler.js";
export { Sampler, topLogprobs } from "./sampler.js";
export type { BackendKind, LoadProgress, SessionOptions } from "./session.js";
export { ModelSession, openModelFile } from "./session.js";
export type { LayerWeights, ModelWeights } from "./weights.js";
export { readLlamaWeights } from "./weights.js";
