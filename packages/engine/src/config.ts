import type { ModelSource } from "@ryzanstein/convert";
import { RyzansteinError, type YarnParams } from "@ryzanstein/core-tensor";

/** Hyper-parameters of a Llama-family model, read from GGUF metadata. */
export interface ModelConfig {
  /** `general.architecture` (`llama`, ...). */
  architecture: string;
  /** Model name from `general.name`, if any. */
  name: string;
  /** Transformer blocks. */
  nLayers: number;
  /** Residual stream width. */
  dim: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (GQA when fewer than `nHeads`). */
  nKvHeads: number;
  /** Elements per head. */
  headDim: number;
  /** Feed-forward hidden width. */
  ffnDim: number;
  /** Vocabulary size (rows of the embedding table). */
  vocabSize: number;
  /** Context length the model was trained for. */
  contextLength: number;
  /** RMSNorm epsilon. */
  normEps: number;
  /** RoPE frequency base. */
  ropeFreqBase: number;
  /** RoPE position scale (1 / linear scaling factor). */
  ropeFreqScale: number;
  /** Rotated dimensions per head. */
  ropeDims: number;
  /** NeoX rotation layout (false for Llama GGUFs, whose Q/K were permuted at conversion). */
  ropeNeox: boolean;
  /**
   * Dynamic NTK scaling (`rope.scaling.type = dynamic`): past `origContext` positions the RoPE base
   * grows with the sequence, as transformers' `dynamic` rope does.
   */
  ropeDynamic?: { factor: number; origContext: number };
  /** YaRN context extension (`rope.scaling.type = yarn`), or undefined. */
  ropeYarn?: YarnParams;
  /** Keys a query sees: the last `slidingWindow` positions (Mistral), or 0 for all. */
  slidingWindow: number;
  /** Layers that use the sliding window: all, or every other one starting at 0 (Gemma 2). */
  slidingWindowLayers: "all" | "even";
  /** Feed-forward gate activation: SiLU (SwiGLU) or tanh-GELU (GeGLU, Gemma). */
  activation: "silu" | "gelu";
  /** Factor on the token embeddings (√dim for Gemma, else 1). */
  embeddingScale: number;
  /** Factor on q·k, `1/√headDim` unless the architecture says otherwise. */
  attentionScale: number;
  /** Soft-capping of attention scores (Gemma 2), 0 for none. */
  attnSoftcap: number;
  /** Soft-capping of the output logits (Gemma 2), 0 for none. */
  finalSoftcap: number;
}

/** One architecture: how to read its config from GGUF metadata. One row per architecture in {@link ARCHITECTURES}. */
export interface ArchitectureSpec {
  /** `general.architecture` value. */
  name: string;
  /** RoPE layout the architecture uses. */
  ropeNeox: boolean;
  /** Feed-forward activation (default SiLU). */
  activation?: "silu" | "gelu";
  /** Scale token embeddings by √dim (Gemma). */
  scaleEmbeddings?: boolean;
  /** Which layers use the sliding window, when there is one (default all). */
  slidingWindowLayers?: "all" | "even";
}

/** Architectures the engine runs, by `general.architecture`. Variants of Llama share its forward pass. */
export const ARCHITECTURES: Readonly<Record<string, ArchitectureSpec>> = {
  llama: { name: "llama", ropeNeox: false },
  qwen2: { name: "qwen2", ropeNeox: true },
  phi3: { name: "phi3", ropeNeox: true },
  gemma: { name: "gemma", ropeNeox: true, activation: "gelu", scaleEmbeddings: true },
  gemma2: {
    name: "gemma2",
    ropeNeox: true,
    activation: "gelu",
    scaleEmbeddings: true,
    slidingWindowLayers: "even",
  },
};

/** Reads and validates a model config from a GGUF file. */
export function readModelConfig(gguf: ModelSource): ModelConfig {
  const arch = gguf.getString("general.architecture");
  const spec = ARCHITECTURES[arch];
  if (!spec) {
    throw new RyzansteinError(
      "UNSUPPORTED_ARCHITECTURE",
      `architecture "${arch}" is not supported (supported: ${Object.keys(ARCHITECTURES).join(", ")})`,
      { file: gguf.file },
    );
  }
  const k = (key: string) => `${arch}.${key}`;
  const dim = gguf.getNumber(k("embedding_length"));
  const nHeads = gguf.getNumber(k("attention.head_count"));
  const nKvHeads = gguf.getNumberOr(k("attention.head_count_kv"), nHeads);
  const nLayers = gguf.getNumber(k("block_count"));
  const ffnDim = gguf.getNumber(k("feed_forward_length"));
  const headDim = gguf.getNumberOr(k("attention.key_length"), dim / Math.max(1, nHeads));
  const embd = gguf.info("token_embd.weight");
  if (!embd)
    throw new RyzansteinError("MISSING_METADATA", "tensor token_embd.weight is missing", { file: gguf.file });
  const scalingType = gguf.get(k("rope.scaling.type"));
  const scalingFactor = gguf.getNumberOr(k("rope.scaling.factor"), 1);
  const config: ModelConfig = {
    architecture: arch,
    name: typeof gguf.get("general.name") === "string" ? (gguf.get("general.name") as string) : arch,
    nLayers,
    dim,
    nHeads,
    nKvHeads,
    headDim,
    ffnDim,
    vocabSize: embd.shape[0],
    contextLength: gguf.getNumberOr(k("context_length"), 2048),
    normEps: gguf.getNumberOr(k("attention.layer_norm_rms_epsilon"), 1e-5),
    ropeFreqBase: gguf.getNumberOr(k("rope.freq_base"), 10000),
    ropeFreqScale:
      (scalingType === "linear" || scalingType === "yarn") && scalingFactor > 0 ? 1 / scalingFactor : 1,
    ...(scalingType === "dynamic"
      ? {
          ropeDynamic: {
            factor: scalingFactor,
            origContext: gguf.getNumberOr(
              k("rope.scaling.original_context_length"),
              gguf.getNumberOr(k("context_length"), 2048),
            ),
          },
        }
      : {}),
    ...(scalingType === "yarn"
      ? {
          ropeYarn: {
            extFactor: 1,
            attnFactor: gguf.getNumberOr(k("rope.scaling.attn_factor"), 1),
            betaFast: gguf.getNumberOr(k("rope.scaling.yarn_beta_fast"), 32),
            betaSlow: gguf.getNumberOr(k("rope.scaling.yarn_beta_slow"), 1),
            origContext: gguf.getNumberOr(
              k("rope.scaling.original_context_length"),
              gguf.getNumberOr(k("context_length"), 2048),
            ),
          },
        }
      : {}),
    ropeDims: gguf.getNumberOr(k("rope.dimension_count"), headDim),
    ropeNeox: spec.ropeNeox,
    slidingWindow: gguf.getNumberOr(k("attention.sliding_window"), 0),
    slidingWindowLayers: spec.slidingWindowLayers ?? "all",
    activation: spec.activation ?? "silu",
    embeddingScale: spec.scaleEmbeddings ? Math.sqrt(dim) : 1,
    attentionScale: 1 / Math.sqrt(headDim),
    attnSoftcap: gguf.getNumberOr(k("attn_logit_softcapping"), 0),
    finalSoftcap: gguf.getNumberOr(k("final_logit_softcapping"), 0),
  };
  validateConfig(config, gguf.file);
  return config;
}

const LIMIT = 1 << 24;

function validateConfig(c: ModelConfig, file: string | undefined): void {
  const positive: Array<keyof ModelConfig> = [
    "nLayers",
    "dim",
    "nHeads",
    "nKvHeads",
    "headDim",
    "ffnDim",
    "vocabSize",
    "contextLength",
    "ropeDims",
  ];
  for (const key of positive) {
    const v = c[key] as number;
    if (!Number.isInteger(v) || v <= 0 || v > LIMIT) {
      throw new RyzansteinError("BAD_METADATA", `model ${key} is ${v}; expected a positive integer`, {
        file,
      });
    }
  }
  if (c.nHeads % c.nKvHeads !== 0) {
    throw new RyzansteinError(
      "BAD_METADATA",
      `head count ${c.nHeads} is not a multiple of the KV head count ${c.nKvHeads}`,
      { file },
    );
  }
  if (c.ropeDims > c.headDim || c.ropeDims % 2 !== 0) {
    throw new RyzansteinError(
      "BAD_METADATA",
      `rope dimension count ${c.ropeDims} does not fit head size ${c.headDim}`,
      { file },
    );
  }
  if (!(c.normEps > 0 && c.normEps < 1) || !(c.ropeFreqBase > 0) || !Number.isFinite(c.ropeFreqBase)) {
    throw new RyzansteinError("BAD_METADATA", "norm epsilon or rope base out of range", { file });
  }
}
