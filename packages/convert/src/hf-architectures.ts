import { RyzansteinError } from "@ryzanstein/core-tensor";
import { GGUFValueType } from "./gguf-types.js";
import type { GGUFWriteValue } from "./gguf-writer.js";

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

/** One HuggingFace architecture: its GGUF metadata and tensor names. One row per architecture in {@link HF_ARCHITECTURES}. */
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
function ropeScalingMetadata(a: string, c: HFConfig, file: string): Record<string, GGUFWriteValue> {
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

const f32 = (value: number): GGUFWriteValue => ({ type: GGUFValueType.FLOAT32, value });
const u32 = (value: number): GGUFWriteValue => ({ type: GGUFValueType.UINT32, value });

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

function configNumber(config: HFConfig, key: string, fallback: number): number {
  const v = config[key];
  return typeof v === "number" ? v : fallback;
}

const LAYER = /^model\.layers\.(\d+)\.(.+)$/;

const QKV_BIAS_TENSORS: Record<string, string> = {
  "self_attn.q_proj.bias": "attn_q.bias",
  "self_attn.k_proj.bias": "attn_k.bias",
  "self_attn.v_proj.bias": "attn_v.bias",
};

const LLAMA_LAYER_TENSORS: Record<string, string> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};

/** What differs between members of the Llama family. */
interface LlamaLikeOptions {
  /** GGUF `general.architecture` and key prefix. */
  arch: string;
  /** HF class name written by the reverse export. */
  hfClass: string;
  /** HF `model_type`. */
  modelType: string;
  /** Llama GGUFs interleave RoPE pairs, so Q/K rows are permuted; NeoX-RoPE models keep HF order. */
  permuteQK: boolean;
  /** Q, K and V projections carry biases (Qwen2). */
  qkvBias: boolean;
  /** `config.sliding_window` is honoured (Mistral): written as `<arch>.attention.sliding_window`. */
  slidingWindow?: boolean;
  /** Q/K/V in one `qkv_proj` and gate/up in one `gate_up_proj` (Phi-3), kept fused as llama.cpp does. */
  fused?: boolean;
}

const FUSED_LAYER_TENSORS: Record<string, string> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.qkv_proj.weight": "attn_qkv.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};

/** Llama-family layouts: one factory, a row per member. */
function llamaLike(o: LlamaLikeOptions): HFArchitecture {
  const a = o.arch;
  return {
    ggufArchitecture: a,
    metadata(c, file) {
      const heads = configInt(c, "num_attention_heads", file);
      const hidden = configInt(c, "hidden_size", file);
      const meta: Record<string, GGUFWriteValue> = {
        "general.architecture": a,
        [`${a}.context_length`]: u32(configInt(c, "max_position_embeddings", file, 2048)),
        [`${a}.embedding_length`]: u32(hidden),
        [`${a}.block_count`]: u32(configInt(c, "num_hidden_layers", file)),
        [`${a}.feed_forward_length`]: u32(configInt(c, "intermediate_size", file)),
        [`${a}.attention.head_count`]: u32(heads),
        [`${a}.attention.head_count_kv`]: u32(configInt(c, "num_key_value_heads", file, heads)),
        [`${a}.rope.freq_base`]: f32(configNumber(c, "rope_theta", 10000)),
        [`${a}.attention.layer_norm_rms_epsilon`]: f32(configNumber(c, "rms_norm_eps", 1e-6)),
        [`${a}.rope.dimension_count`]: u32(
          Math.round(
            configInt(c, "head_dim", file, hidden / heads) * configNumber(c, "partial_rotary_factor", 1),
          ),
        ),
        [`${a}.vocab_size`]: u32(configInt(c, "vocab_size", file)),
      };
      if (o.slidingWindow && typeof c.sliding_window === "number" && c.sliding_window > 0) {
        meta[`${a}.attention.sliding_window`] = u32(c.sliding_window);
      }
      Object.assign(meta, ropeScalingMetadata(a, c, file));
      return meta;
    },
    extraTensors(c) {
      const factors = llama3RopeFactors(c);
      return factors ? [{ name: "rope_freqs.weight", values: factors }] : [];
    },
    mapTensor(name, c) {
      if (name === "model.embed_tokens.weight") return { gguf: "token_embd.weight" };
      if (name === "model.norm.weight") return { gguf: "output_norm.weight" };
      if (name === "lm_head.weight")
        return c.tie_word_embeddings === true ? undefined : { gguf: "output.weight" };
      const m = LAYER.exec(name);
      const table = o.fused ? FUSED_LAYER_TENSORS : LLAMA_LAYER_TENSORS;
      const target = m ? (table[m[2]] ?? (o.qkvBias ? QKV_BIAS_TENSORS[m[2]] : undefined)) : undefined;
      if (!m || !target) return undefined;
      const heads = c.num_attention_heads as number;
      const kvHeads = (c.num_key_value_heads as number | undefined) ?? heads;
      const permuteHeads = !o.permuteQK
        ? undefined
        : m[2] === "self_attn.q_proj.weight"
          ? heads
          : m[2] === "self_attn.k_proj.weight"
            ? kvHeads
            : undefined;
      return { gguf: `blk.${m[1]}.${target}`, ...(permuteHeads ? { permuteHeads } : {}) };
    },
    expectedShape(name, c) {
      const H = c.hidden_size as number;
      const heads = c.num_attention_heads as number;
      const hd = (c.head_dim as number | undefined) ?? H / heads;
      const kv = ((c.num_key_value_heads as number | undefined) ?? heads) * hd;
      const I = c.intermediate_size as number;
      const V = c.vocab_size as number;
      const part = name.replace(/^blk\.\d+\./, "");
      const shapes: Record<string, [number[], string]> = {
        "token_embd.weight": [[V, H], "vocab_size, hidden_size"],
        "output.weight": [[V, H], "vocab_size, hidden_size"],
        "output_norm.weight": [[H], "hidden_size"],
        "attn_norm.weight": [[H], "hidden_size"],
        "ffn_norm.weight": [[H], "hidden_size"],
        "attn_q.weight": [[heads * hd, H], "num_attention_heads, hidden_size"],
        "attn_k.weight": [[kv, H], "num_key_value_heads, hidden_size"],
        "attn_v.weight": [[kv, H], "num_key_value_heads, hidden_size"],
        "attn_output.weight": [[H, heads * hd], "hidden_size, num_attention_heads"],
        "ffn_gate.weight": [[I, H], "intermediate_size, hidden_size"],
        "ffn_up.weight": [[o.fused ? 2 * I : I, H], "intermediate_size, hidden_size"],
        "ffn_down.weight": [[H, I], "hidden_size, intermediate_size"],
        "attn_qkv.weight": [
          [heads * hd + 2 * kv, H],
          "num_attention_heads, num_key_value_heads, hidden_size",
        ],
        "attn_q.bias": [[heads * hd], "num_attention_heads"],
        "attn_k.bias": [[kv], "num_key_value_heads"],
        "attn_v.bias": [[kv], "num_key_value_heads"],
      };
      const hit = shapes[part];
      return hit ? { shape: hit[0], keys: hit[1] } : undefined;
    },
    configFromMetadata(meta) {
      const n = (k: string) => Number(meta[`${a}.${k}`]);
      const heads = n("attention.head_count");
      const window = meta[`${a}.attention.sliding_window`];
      // A Llama GGUF with a sliding window came from Mistral.
      const mistral = window !== undefined && a === "llama";
      return {
        architectures: [mistral ? "MistralForCausalLM" : o.hfClass],
        model_type: mistral ? "mistral" : o.modelType,
        ...(window !== undefined ? { sliding_window: Number(window) } : {}),
        hidden_size: n("embedding_length"),
        intermediate_size: n("feed_forward_length"),
        num_hidden_layers: n("block_count"),
        num_attention_heads: heads,
        num_key_value_heads:
          meta[`${a}.attention.head_count_kv`] !== undefined ? n("attention.head_count_kv") : heads,
        max_position_embeddings: meta[`${a}.context_length`] !== undefined ? n("context_length") : 2048,
        rms_norm_eps:
          meta[`${a}.attention.layer_norm_rms_epsilon`] !== undefined
            ? n("attention.layer_norm_rms_epsilon")
            : 1e-5,
        rope_theta: meta[`${a}.rope.freq_base`] !== undefined ? n("rope.freq_base") : 10000,
        hidden_act: "silu",
        torch_dtype: "float32",
      };
    },
  };
}

const GEMMA_LAYER_TENSORS: Record<string, string> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};

/** Gemma 2 norms around both blocks; Gemma 1 has Llama's two. */
const GEMMA_NORMS: Record<1 | 2, Record<string, string>> = {
  1: { "post_attention_layernorm.weight": "ffn_norm.weight" },
  2: {
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
  },
};

/**
 * Gemma and Gemma 2: GeGLU, √dim embedding scale, tied embeddings, NeoX RoPE, explicit head size,
 * and RMSNorm weights stored as `w` for `(1 + w)`, so conversion adds 1 as llama.cpp's does.
 * Gemma 2 adds norms after attention and feed-forward, soft-capping and alternating windows.
 */
function gemmaLike(version: 1 | 2): HFArchitecture {
  const a = version === 1 ? "gemma" : "gemma2";
  const layerTable = { ...GEMMA_LAYER_TENSORS, ...GEMMA_NORMS[version] };
  return {
    ggufArchitecture: a,
    metadata(c, file) {
      const heads = configInt(c, "num_attention_heads", file);
      const hidden = configInt(c, "hidden_size", file);
      const headDim = configInt(c, "head_dim", file, hidden / heads);
      const meta: Record<string, GGUFWriteValue> = {
        "general.architecture": a,
        [`${a}.context_length`]: u32(configInt(c, "max_position_embeddings", file, 8192)),
        [`${a}.embedding_length`]: u32(hidden),
        [`${a}.block_count`]: u32(configInt(c, "num_hidden_layers", file)),
        [`${a}.feed_forward_length`]: u32(configInt(c, "intermediate_size", file)),
        [`${a}.attention.head_count`]: u32(heads),
        [`${a}.attention.head_count_kv`]: u32(configInt(c, "num_key_value_heads", file, heads)),
        [`${a}.attention.key_length`]: u32(headDim),
        [`${a}.attention.value_length`]: u32(headDim),
        [`${a}.rope.dimension_count`]: u32(headDim),
        [`${a}.rope.freq_base`]: f32(configNumber(c, "rope_theta", 10000)),
        [`${a}.attention.layer_norm_rms_epsilon`]: f32(configNumber(c, "rms_norm_eps", 1e-6)),
      };
      if (version === 2) {
        meta[`${a}.attn_logit_softcapping`] = f32(configNumber(c, "attn_logit_softcapping", 50));
        meta[`${a}.final_logit_softcapping`] = f32(configNumber(c, "final_logit_softcapping", 30));
        meta[`${a}.attention.sliding_window`] = u32(configInt(c, "sliding_window", file, 4096));
        const scalar = configNumber(c, "query_pre_attn_scalar", headDim);
        if (scalar !== headDim) {
          throw new RyzansteinError(
            "UNSUPPORTED_ARCHITECTURE",
            `config.json: query_pre_attn_scalar ${scalar} ≠ head_dim is not supported yet`,
            {
              file,
            },
          );
        }
      }
      return meta;
    },
    mapTensor(name) {
      if (name === "model.embed_tokens.weight") return { gguf: "token_embd.weight" };
      if (name === "model.norm.weight") return { gguf: "output_norm.weight", normOffset: 1 };
      const m = LAYER.exec(name);
      const target = m ? layerTable[m[2]] : undefined;
      if (!m || !target) return undefined;
      return { gguf: `blk.${m[1]}.${target}`, ...(target.endsWith("norm.weight") ? { normOffset: 1 } : {}) };
    },
    expectedShape(name, c) {
      const H = c.hidden_size as number;
      const heads = c.num_attention_heads as number;
      const hd = (c.head_dim as number | undefined) ?? H / heads;
      const kv = ((c.num_key_value_heads as number | undefined) ?? heads) * hd;
      const I = c.intermediate_size as number;
      const part = name.replace(/^blk\.\d+\./, "");
      const shapes: Record<string, [number[], string]> = {
        "token_embd.weight": [[c.vocab_size as number, H], "vocab_size, hidden_size"],
        "attn_q.weight": [[heads * hd, H], "num_attention_heads, head_dim, hidden_size"],
        "attn_k.weight": [[kv, H], "num_key_value_heads, head_dim, hidden_size"],
        "attn_v.weight": [[kv, H], "num_key_value_heads, head_dim, hidden_size"],
        "attn_output.weight": [[H, heads * hd], "hidden_size, num_attention_heads, head_dim"],
        "ffn_gate.weight": [[I, H], "intermediate_size, hidden_size"],
        "ffn_up.weight": [[I, H], "intermediate_size, hidden_size"],
        "ffn_down.weight": [[H, I], "hidden_size, intermediate_size"],
      };
      const hit =
        shapes[part] ??
        (part.endsWith("norm.weight") ? ([[H], "hidden_size"] as [number[], string]) : undefined);
      return hit ? { shape: hit[0], keys: hit[1] } : undefined;
    },
    configFromMetadata(meta) {
      const n = (k: string) => Number(meta[`${a}.${k}`]);
      return {
        architectures: [version === 1 ? "GemmaForCausalLM" : "Gemma2ForCausalLM"],
        model_type: a,
        hidden_size: n("embedding_length"),
        intermediate_size: n("feed_forward_length"),
        num_hidden_layers: n("block_count"),
        num_attention_heads: n("attention.head_count"),
        num_key_value_heads: n("attention.head_count_kv"),
        head_dim: n("attention.key_length"),
        max_position_embeddings: n("context_length"),
        rms_norm_eps: n("attention.layer_norm_rms_epsilon"),
        rope_theta: meta[`${a}.rope.freq_base`] !== undefined ? n("rope.freq_base") : 10000,
        hidden_activation: "gelu_pytorch_tanh",
        ...(version === 2
          ? {
              attn_logit_softcapping: n("attn_logit_softcapping"),
              final_logit_softcapping: n("final_logit_softcapping"),
              sliding_window: n("attention.sliding_window"),
              query_pre_attn_scalar: n("attention.key_length"),
            }
          : {}),
        torch_dtype: "float32",
      };
    },
  };
}

/** HF `architectures[0]` → mapping. TinyLlama and SmolLM ship as `LlamaForCausalLM`. */
export const HF_ARCHITECTURES: Readonly<Record<string, HFArchitecture>> = {
  LlamaForCausalLM: llamaLike({
    arch: "llama",
    hfClass: "LlamaForCausalLM",
    modelType: "llama",
    permuteQK: true,
    qkvBias: false,
  }),
  MistralForCausalLM: llamaLike({
    arch: "llama",
    hfClass: "MistralForCausalLM",
    modelType: "mistral",
    permuteQK: true,
    qkvBias: false,
    slidingWindow: true,
  }),
  Phi3ForCausalLM: llamaLike({
    arch: "phi3",
    hfClass: "Phi3ForCausalLM",
    modelType: "phi3",
    permuteQK: false,
    qkvBias: false,
    slidingWindow: true,
    fused: true,
  }),
  GemmaForCausalLM: gemmaLike(1),
  Gemma2ForCausalLM: gemmaLike(2),
  Qwen2ForCausalLM: llamaLike({
    arch: "qwen2",
    hfClass: "Qwen2ForCausalLM",
    modelType: "qwen2",
    permuteQK: false,
    qkvBias: true,
  }),
};

/** GGUF `general.architecture` → the HF class name the reverse export writes. */
export const GGUF_TO_HF_ARCHITECTURE: Readonly<Record<string, string>> = {
  llama: "LlamaForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  phi3: "Phi3ForCausalLM",
  gemma: "GemmaForCausalLM",
  gemma2: "Gemma2ForCausalLM",
};
