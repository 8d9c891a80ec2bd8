import { llamaLike } from "./llama-family.js";

/** Llama 2/3, TinyLlama and SmolLM (Q/K permuted for interleaved RoPE). */
export const llama = llamaLike({
  arch: "llama",
  hfClass: "LlamaForCausalLM",
  modelType: "llama",
  permuteQK: true,
  qkvBias: false,
});

/** Mistral: the Llama layout with a sliding attention window. */
export const mistral = llamaLike({
  arch: "llama",
  hfClass: "MistralForCausalLM",
  modelType: "mistral",
  permuteQK: true,
  qkvBias: false,
  slidingWindow: true,
});
