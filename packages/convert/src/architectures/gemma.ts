// Gemma and Gemma 2.
import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { GGUFWriteValue } from "../gguf-writer.js";
import { configInt, configNumber, f32, type HFArchitecture, LAYER, u32 } from "./common.js";

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

/** Gemma (GeGLU, √dim embeddings, `1 + w` norms). */
export const gemma = gemmaLike(1);
/** Gemma 2 (Gemma plus post-norms, soft-capping, alternating sliding windows). */
export const gemma2 = gemmaLike(2);
