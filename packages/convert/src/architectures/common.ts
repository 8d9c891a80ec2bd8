// What every HuggingFace → GGUF architecture mapping shares.
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { GGUFValueType } from "../gguf-types.js";
import type { GGUFWriteValue } from "../gguf-writer.js";

/** A HuggingFace `config.json` (the keys the mappings read). */
export type HFConfig = Record<string, unknown>;

/** How one HF tensor becomes one GGUF tensor. */
export interface TensorMapping {
  /** GGUF tensor name. */
  gguf: string;
  /** Row permutation applied on the way to GGUF (and inverted on the way back). */
  permuteHeads?: number;
  /** Added to every weight on the way to GGUF, subtracted on the way back (Gemma's `1 + w` norms). */
  normOffset?: number;
}

/** One HuggingFace architecture: its GGUF metadata and tensor names. One row per architecture in `HF_ARCHITECTURES`. */
export interface HFArchitecture {
  /** `general.architecture` in GGUF. */
  ggufArchitecture: string;
  /** GGUF metadata (without tokenizer keys) from `config.json`. */
  metadata(config: HFConfig, file: string): Record<string, GGUFWriteValue>;
  /** GGUF name (and transform) of an HF tensor name, or undefined for tensors GGUF does not keep. */
  mapTensor(hfName: string, config: HFConfig): TensorMapping | undefined;
  /** The shape `config.json` implies for a GGUF tensor, and the config keys it comes from. */
  expectedShape(ggufName: string, config: HFConfig): { shape: number[]; keys: string } | undefined;
  /** `config.json` from GGUF metadata, for the reverse export. */
  configFromMetadata(meta: Record<string, unknown>): HFConfig;
  /** Tensors GGUF needs that the checkpoint does not store (Llama 3.1's `rope_freqs.weight`). */
  extraTensors?(config: HFConfig): Array<{ name: string; values: Float32Array }>;
}

type RopeScaling = {
  type?: string;
  rope_type?: string;
  factor?: number;
  original_max_position_embeddings?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  attention_factor?: number;
  beta_fast?: number;
  beta_slow?: number;
};

/** `rope_scaling` of config.json as GGUF keys (linear, YaRN; Llama 3's factors go to a tensor). */
export function ropeScalingMetadata(a: string, c: HFConfig, file: string): Record<string, GGUFWriteValue> {
  const scaling = c.rope_scaling as RopeScaling | null | undefined;
  const kind = scaling?.rope_type ?? scaling?.type;
  if (!scaling || !kind || kind === "default" || kind === "llama3") return {};
  const factor = scaling.factor;
  if (typeof factor !== "number" || !(factor > 0)) {
    throw new RyzansteinError("BAD_METADATA", `config.json: rope_scaling.factor must be a positive number`, {
      file,
    });
  }
  if (kind === "linear")
    return { [`${a}.rope.scaling.type`]: "linear", [`${a}.rope.scaling.factor`]: f32(factor) };
  if (kind === "dynamic") {
    // Dynamic NTK: llama.cpp has no such type (it runs these models unscaled); our engine reads it.
    return {
      [`${a}.rope.scaling.type`]: "dynamic",
      [`${a}.rope.scaling.factor`]: f32(factor),
      [`${a}.rope.scaling.original_context_length`]: u32(
        scaling.original_max_position_embeddings ?? configInt(c, "max_position_embeddings", file),
      ),
    };
  }
  if (kind === "yarn") {
    return {
      [`${a}.rope.scaling.type`]: "yarn",
      [`${a}.rope.scaling.factor`]: f32(factor),
      [`${a}.rope.scaling.original_context_length`]: u32(
        scaling.original_max_position_embeddings ?? configInt(c, "max_position_embeddings", file),
      ),
      ...(scaling.attention_factor !== undefined
        ? { [`${a}.rope.scaling.attn_factor`]: f32(scaling.attention_factor) }
        : {}),
      ...(scaling.beta_fast !== undefined
        ? { [`${a}.rope.scaling.yarn_beta_fast`]: f32(scaling.beta_fast) }
        : {}),
      ...(scaling.beta_slow !== undefined
        ? { [`${a}.rope.scaling.yarn_beta_slow`]: f32(scaling.beta_slow) }
        : {}),
    };
  }
  throw new RyzansteinError(
    "UNSUPPORTED_ARCHITECTURE",
    `config.json: rope_scaling type ${kind} is not supported (linear, dynamic, yarn and llama3 are)`,
    { file },
  );
}

/**
 * Llama 3.1's per-frequency divisors (HF `_compute_llama3_parameters`), stored by llama.cpp as
 * `rope_freqs.weight`: 1 for high frequencies, `factor` for low ones, a smooth blend between.
 */
export function llama3RopeFactors(c: HFConfig): Float32Array | undefined {
  const s = c.rope_scaling as RopeScaling | null | undefined;
  if ((s?.rope_type ?? s?.type) !== "llama3") return undefined;
  const hidden = c.hidden_size as number;
  const heads = c.num_attention_heads as number;
  const dim = (c.head_dim as number | undefined) ?? hidden / heads;
  const base = (c.rope_theta as number | undefined) ?? 10000;
  const factor = s?.factor ?? 8;
  const low = s?.low_freq_factor ?? 1;
  const high = s?.high_freq_factor ?? 4;
  const old = s?.original_max_position_embeddings ?? 8192;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const wavelen = (2 * Math.PI) / base ** ((-2 * i) / dim);
    if (wavelen < old / high) out[i] = 1;
    else if (wavelen > old / low) out[i] = factor;
    else {
      const smooth = (old / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

export const f32 = (value: number): GGUFWriteValue => ({ type: GGUFValueType.FLOAT32, value });
export const u32 = (value: number): GGUFWriteValue => ({ type: GGUFValueType.UINT32, value });

/** Reads a required positive integer from config.json. */
export function configInt(config: HFConfig, key: string, file: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new RyzansteinError(
      v === undefined ? "MISSING_METADATA" : "BAD_METADATA",
      v === undefined
        ? `config.json has no ${key}`
        : `config.json: ${key} must be a positive integer, got ${JSON.stringify(v)}`,
      { file },
    );
  }
  return v;
}

export function configNumber(config: HFConfig, key: string, fallback: number): number {
  const v = config[key];
  return typeof v === "number" ? v : fallback;
}

export const LAYER = /^model\.layers\.(\d+)\.(.+)$/;
