// The Llama family's layout: one factory, one row per member (llama.ts, qwen2.ts, phi3.ts).
import type { GGUFWriteValue } from "../gguf-writer.js";
import {
  configInt,
  configNumber,
  f32,
  type HFArchitecture,
  LAYER,
  llama3RopeFactors,
  ropeScalingMetadata,
  u32,
} from "./common.js";

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
export function llamaLike(o: LlamaLikeOptions): HFArchitecture {
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
