export type { ParseGGUFOptions } from "./gguf-reader.js";
export { GGUFFile, parseGGUF, readGGUF } from "./gguf-reader.js";
export type { GGUFTensorInfo, GGUFTypedValue, GGUFValue } from "./gguf-types.js";
export { GGUFValueType } from "./gguf-types.js";
export type { GGUFWriteSpec, GGUFWriteTensor, GGUFWriteValue, WriteProgress } from "./gguf-writer.js";
export { serializeGGUF, writeGGUF } from "./gguf-writer.js";
export type { SafetensorsFile, SafetensorsTensorInfo } from "./safetensors.js";
export { parseSafetensors, readSafetensors } from "./safetensors.js";
