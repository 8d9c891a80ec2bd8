import { llamaLike } from "./llama-family.js";

/** Qwen2 / Qwen2.5: Q, K, V biases and NeoX RoPE. */
export const qwen2 = llamaLike({
  arch: "qwen2",
  hfClass: "Qwen2ForCausalLM",
  modelType: "qwen2",
  permuteQK: false,
  qkvBias: true,
});
