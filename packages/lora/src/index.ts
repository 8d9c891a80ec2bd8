/**
 * `@ryzanstein/lora`: LoRA fine-tuning on a frozen Llama base in any supported GGUF format (F32,
 * F16, BF16, Q8_0, Q4_0, kept in that format in memory: QLoRA), activation checkpointing,, adapter export as llama.cpp GGUF LoRA
 * and as PEFT, loading both back, and merging into the base.
 *
 * @packageDocumentation
 */
export { type AdapterSpec, LoraAdapters } from "./adapters.js";
export { type BaseModel, type LoadBaseOptions, loadBase } from "./base.js";
export { LORA_MODULES, type LoraConfig, resolveTargets } from "./config.js";
export {
  adapterWeights,
  type LoraWeights,
  loadGGUFAdapter,
  loadPeft,
  mergedWeight,
  mergeToGGUF,
  saveGGUFAdapter,
  savePeft,
} from "./export.js";
export {
  type FinetuneOptions,
  type FinetuneResult,
  finetune,
  layerActivationBytes,
} from "./finetune.js";
