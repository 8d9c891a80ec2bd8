import type {
  BackendKind,
  KVCacheType,
  ModelConfig,
  SamplingOptions,
  TokenLogprob,
} from "@ryzanstein/engine";

/** Settings of the batched engine (worker side). */
export interface BatchEngineOptions {
  /** `native` (default) or `reference`. */
  backend?: BackendKind;
  /** Native threads (default: all cores). */
  threads?: number;
  /** Positions one sequence may reach (default: the model's context length, at most 4096). */
  contextSize?: number;
  /** KV blocks (default: enough for `maxSeqs` full contexts, or `kvMemoryBytes`). */
  numBlocks?: number;
  /** Bytes of KV cache to allocate (an alternative to `numBlocks`). */
  kvMemoryBytes?: number;
  /**
   * Element type of the paged KV cache: `f16` (default, as the single-sequence engine), `f32`, or
   * `q8_0` (llama.cpp's Q8_0 per 32 values: ~53% of the bytes of F16 per block, so `kvMemoryBytes`
   * holds ~1.9× the blocks and attention reads about half the bytes; needs headDim to be a multiple
   * of 32, as llama.cpp).
   */
  kvType?: KVCacheType;
  /** Positions per KV block. Default 16. */
  blockSize?: number;
  /** Tokens per step. Default 256. */
  maxBatchTokens?: number;
  /** Sequences running at once. Default 8. */
  maxSeqs?: number;
  /** Requests waiting beyond the running ones before new ones are refused (503). Default 64. */
  maxQueue?: number;
  /** Reuse cached prefixes. Default true. */
  prefixCaching?: boolean;
}

/** What one request asks of the engine. */
export interface RequestParams extends SamplingOptions {
  /** Tokens to generate at most. */
  maxTokens: number;
  /** Stop strings (not included in the output). */
  stop?: string[];
  /** Log-probability of each chosen token. */
  logprobs?: boolean;
  /** Alternatives per token. */
  topLogprobs?: number;
  /** Keep going after end-of-generation tokens. */
  ignoreEos?: boolean;
  /** Compute the pooled hidden state of the prompt instead of generating. */
  embed?: boolean;
}

/** Engine counters sent with every batch of events. */
export interface EngineStats {
  /** Requests waiting for admission. */
  waiting: number;
  /** Requests running. */
  running: number;
  /** KV blocks in use. */
  usedBlocks: number;
  /** KV blocks in the pool. */
  totalBlocks: number;
  /** Unreferenced blocks still holding a cached prefix. */
  cachedBlocks: number;
  /** Prompt tokens looked up in the prefix cache. */
  queriedTokens: number;
  /** Prompt tokens found there. */
  hitTokens: number;
  /** Preemptions since the start. */
  preemptions: number;
  /** Steps run. */
  steps: number;
}

/** One event of one request. */
export interface TokenEvent {
  /** Request id. */
  id: string;
  /** Token id, when a token was generated. */
  token?: number;
  /** Text released by this event. */
  text: string;
  /** ln p(token). */
  logprob?: number;
  /** Alternatives. */
  top?: TokenLogprob[];
  /** Set on the last event of a request. */
  finish?: {
    reason: "stop" | "length";
    promptTokens: number;
    completionTokens: number;
  };
}

/** Main thread → worker. */
export type ToWorker =
  | { type: "init"; path: string; options: BatchEngineOptions }
  | { type: "add"; id: string; prompt: number[]; params: RequestParams; forkOf?: string }
  | { type: "cancel"; id: string }
  | { type: "dispose" };

/** Worker → main thread. */
export type FromWorker =
  | {
      type: "ready";
      config: ModelConfig;
      contextSize: number;
      backend: string;
      numBlocks: number;
      blockSize: number;
      kvType: KVCacheType;
      maxSequenceTokens: number;
    }
  | { type: "events"; events: TokenEvent[]; stats: EngineStats }
  | { type: "embedding"; id: string; data: Float32Array; promptTokens: number }
  | { type: "rejected"; id: string; code: string; message: string }
  | { type: "error"; message: string };
