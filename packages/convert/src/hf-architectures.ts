// The registry of HuggingFace architectures: one row each, one file per architecture in architectures/.

import type { HFArchitecture } from "./architectures/common.js";
import { gemma, gemma2 } from "./architectures/gemma.js";
import { llama, mistral } from "./architectures/llama.js";
import { phi3 } from "./architectures/phi3.js";
import { qwen2 } from "./architectures/qwen2.js";

export type { HFArchitecture, HFConfig, TensorMapping } from "./architectures/common.js";
export { configInt, llama3RopeFactors } from "./architectures/common.js";

/** HF `architectures[0]` → mapping. TinyLlama and SmolLM ship as `LlamaForCausalLM`. */
export const HF_ARCHITECTURES: Readonly<Record<string, HFArchitecture>> = {
  LlamaForCausalLM: llama,
  MistralForCausalLM: mistral,
  Phi3ForCausalLM: phi3,
  GemmaForCausalLM: gemma,
  Gemma2ForCausalLM: gemma2,
  Qwen2ForCausalLM: qwen2,
};

/** GGUF `general.architecture` → the HF class name the reverse export writes. */
export const GGUF_TO_HF_ARCHITECTURE: Readonly<Record<string, string>> = {
  llama: "LlamaForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  phi3: "Phi3ForCausalLM",
  gemma: "GemmaForCausalLM",
  gemma2: "Gemma2ForCausalLM",
};
