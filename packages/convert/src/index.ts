export type { ModelFormat } from "./detect.js";
export { detectFormat } from "./detect.js";
export type { ExportGGUFOptions, FormatFallback } from "./export.js";
export { writeModelAsGGUF, writeModelAsHF } from "./export.js";
export type { ParseGGUFOptions } from "./gguf-reader.js";
export { GGUFFile, openGGUFLazy, parseGGUF, readGGUF } from "./gguf-reader.js";
export type { GGUFTensorInfo, GGUFTypedValue, GGUFValue } from "./gguf-types.js";
export { GGUFValueType } from "./gguf-types.js";
export type { GGUFWriteSpec, GGUFWriteTensor, GGUFWriteValue, WriteProgress } from "./gguf-writer.js";
export { serializeGGUF, writeGGUF } from "./gguf-writer.js";
export type { HFArchitecture, HFConfig, TensorMapping } from "./hf-architectures.js";
export { HF_ARCHITECTURES } from "./hf-architectures.js";
export type { OpenHFModelOptions } from "./hf-model.js";
export { HFModel, openHFModel, permuteHeadRows, safetensorsFiles } from "./hf-model.js";
export { readRange } from "./io.js";
export type { TensorInfo } from "./model-source.js";
export { ModelSource } from "./model-source.js";
export type {
  ParseSafetensorsOptions,
  SafetensorsFile,
  SafetensorsTensorInfo,
  SafetensorsWriteTensor,
} from "./safetensors.js";
export {
  openSafetensorsLazy,
  parseSafetensors,
  readSafetensors,
  writeSafetensors,
} from "./safetensors.js";
