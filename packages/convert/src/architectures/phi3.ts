import { llamaLike } from "./llama-family.js";

/** Phi-3: Q/K/V and gate/up fused, NeoX RoPE. */
export const phi3 = llamaLike({
  arch: "phi3",
  hfClass: "Phi3ForCausalLM",
  modelType: "phi3",
  permuteQK: false,
  qkvBias: false,
  slidingWindow: true,
  fused: true,
});
