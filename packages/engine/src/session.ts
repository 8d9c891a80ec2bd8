import { readFileSync, statSync } from "node:fs";
import { detectFormat, type ModelSource, openHFModel, parseGGUF } from "@ryzanstein/convert";
import { type Backend, ReferenceBackend, RyzansteinError } from "@ryzanstein/core-tensor";
import { type Isa, mapFile, NativeBackend } from "@ryzanstein/kernels-native";
import { createTokenizerFromGGUF, type Tokenizer } from "@ryzanstein/tokenizers";
import { type AdapterWeights, withAdapter } from "./adapters.js";
import { type ModelConfig, readModelConfig } from "./config.js";
import {
  type GeneratedToken,
  type GenerateOptions,
  type GenerationResult,
  generateTokens,
} from "./generate.js";
import { type AttentionNumerics, type Context, type KVCacheType, Model } from "./model.js";
import { readLlamaWeights } from "./weights.js";

/** Which backend runs the arithmetic. */
export type BackendKind = "native" | "reference";

/** Settings for loading a model. */
export interface SessionOptions {
  /** `native` (C++ kernels, default) or `reference` (plain TypeScript, slow, exact). */
  backend?: BackendKind;
  /** Native threads (default: all cores). */
  threads?: number;
  /** Force a native ISA variant (default: the best this CPU runs). */
  isa?: Isa;
  /** KV cache positions (default: the model's context length, at most 4096). */
  contextSize?: number;
  /** Tokens per forward call while processing a prompt (default 512). */
  batchSize?: number;
  /** KV cache element type (default `f16`, as llama.cpp). */
  kvCache?: KVCacheType;
  /** How attention sums over an F16 cache (default `float`; `llama.cpp` reproduces its numbers). */
  attentionNumerics?: AttentionNumerics;
  /** Repack quantized weights at load for the native kernels (default true; see NativeBackendOptions.repack). */
  repack?: boolean;
  /** A LoRA adapter applied beside the frozen weights at every step (not merged into them). */
  lora?: AdapterWeights;
  /** Run the fused steps (default true unless `RYZANSTEIN_FUSED=0`; results are identical, see ModelOptions). */
  fused?: boolean;
}

/** Phases of loading, reported through the progress callback. */
export interface LoadProgress {
  /** What is happening. */
  phase: "reading" | "parsing" | "weights" | "ready";
  /** Fraction done, 0 to 1. */
  fraction: number;
}

/** Reads a file memory-mapped when the native addon is there, read once otherwise. */
function readBytes(path: string): Uint8Array {
  try {
    return mapFile(path);
  } catch {
    return readFileSync(path);
  }
}

/**
 * Opens a model for the engine: a GGUF file (memory-mapped) or a HuggingFace folder
 * (`config.json` + safetensors + `tokenizer.json`), both seen with GGUF names.
 */
export function openModelFile(path: string): ModelSource {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new RyzansteinError("MODEL_NOT_FOUND", `model file not found: ${path}`, { cause: e });
  }
  if (size === 0) throw new RyzansteinError("TRUNCATED", "the file is empty", { file: path });
  const format = detectFormat(path);
  if (format === "hf-folder") return openHFModel(path, { readFile: readBytes });
  if (format === "safetensors") {
    throw new RyzansteinError(
      "MISSING_METADATA",
      "a lone safetensors file has no config.json: point at its HuggingFace folder",
      {
        file: path,
      },
    );
  }
  if (format === "llama2c") {
    throw new RyzansteinError(
      "UNSUPPORTED_ARCHITECTURE",
      "llama2.c checkpoints are recognised but not loaded yet: convert to GGUF",
      {
        file: path,
      },
    );
  }
  return parseGGUF(readBytes(path), { file: path });
}

function createBackend(o: SessionOptions): Backend {
  if ((o.backend ?? "native") === "reference") return new ReferenceBackend();
  return new NativeBackend({ threads: o.threads, isa: o.isa, repack: o.repack });
}

/**
 * One model with one sequence context: what lives in the engine worker (or in-process). Keeps the
 * tokens whose K/V are cached so a new prompt that extends the last one reuses that prefix.
 */
export class ModelSession {
  /** Model hyper-parameters. */
  readonly config: ModelConfig;
  /** The model's tokenizer. */
  readonly tokenizer: Tokenizer;
  /** The forward pass. */
  readonly model: Model;
  private readonly ctx: Context;
  private cached: number[] = [];

  constructor(gguf: ModelSource, options: SessionOptions = {}, onProgress?: (p: LoadProgress) => void) {
    onProgress?.({ phase: "parsing", fraction: 0.1 });
    this.config = readModelConfig(gguf);
    this.tokenizer = createTokenizerFromGGUF(gguf.metadata);
    onProgress?.({ phase: "weights", fraction: 0.3 });
    const weights = readLlamaWeights(gguf, this.config);
    const contextSize = options.contextSize ?? Math.min(this.config.contextLength, 4096);
    if (!Number.isInteger(contextSize) || contextSize < 2 || contextSize > 1 << 20) {
      throw new RyzansteinError("INVALID_ARGUMENT", `context size ${contextSize} is out of range`);
    }
    const backend = createBackend(options);
    this.model = new Model(
      this.config,
      weights,
      options.lora ? withAdapter(backend, weights, options.lora) : backend,
      options.fused === undefined ? {} : { fused: options.fused },
    );
    this.ctx = this.model.createContext(
      contextSize,
      options.batchSize ?? 512,
      options.kvCache ?? "f16",
      options.attentionNumerics ?? "float",
    );
    onProgress?.({ phase: "ready", fraction: 1 });
  }

  /** Positions in the KV cache. */
  get contextSize(): number {
    return this.ctx.size;
  }

  /** Name of the backend in use. */
  get backendName(): string {
    return this.model.backend.name;
  }

  /** Drops the cached sequence past its longest common prefix with `prompt`, and returns the tokens still to run. */
  private reuse(prompt: number[]): number[] {
    let common = 0;
    const max = Math.min(this.cached.length, prompt.length - 1); // always evaluate at least one token
    while (common < max && this.cached[common] === prompt[common]) common++;
    this.ctx.truncate(common);
    this.cached.length = common;
    return prompt.slice(common);
  }

  /** Generates from `prompt` token ids (see {@link generateTokens}). */
  *generate(
    prompt: number[],
    options: GenerateOptions,
    isAborted: () => boolean,
  ): Generator<GeneratedToken, GenerationResult> {
    const rest = this.reuse(prompt);
    this.cached.push(...rest);
    const inner = generateTokens(this.model, this.ctx, this.tokenizer, rest, options, isAborted);
    let step = inner.next();
    while (!step.done) {
      this.cached.push(step.value.token);
      yield step.value;
      step = inner.next();
    }
    // The cache holds K/V of every token except the last sampled one.
    this.cached.length = this.ctx.length;
    return { ...step.value, promptTokens: prompt.length };
  }

  /** Logits of every position of `tokens` run as a fresh sequence, `[tokens.length, vocab]`. */
  logits(tokens: number[]): Float32Array {
    this.ctx.truncate(0);
    this.cached = [];
    const vocab = this.config.vocabSize;
    const out = new Float32Array(tokens.length * vocab);
    for (let start = 0; start < tokens.length; start += this.ctx.maxBatch) {
      const chunk = tokens.slice(start, start + this.ctx.maxBatch);
      out.set(this.model.forward(this.ctx, chunk, "all"), start * vocab);
    }
    this.cached = tokens.slice(0, this.ctx.length);
    return out;
  }

  /** Frees native resources. */
  dispose(): void {
    this.model.backend.dispose?.();
  }
}
