export type {
  ActivationBuffer,
  AttentionParams,
  Backend,
  KVCacheArray,
  PagedAttentionParams,
  PagedKVCacheArray,
  RopeParams,
  RopeQK,
  YarnParams,
} from "./backend.js";
export type { TypeInfo } from "./dtypes.js";
export {
  GGMLType,
  isKnownType,
  llamaFileType,
  rowBytes,
  TYPE_INFO,
  typeFromName,
  typeName,
} from "./dtypes.js";
export type { RyzansteinErrorCode, RyzansteinErrorOptions } from "./errors.js";
export { isRyzansteinError, RyzansteinError } from "./errors.js";
export type { ComputeFormat, FormatTraits } from "./formats.js";
export { dequantizeRow, FORMAT_TRAITS, isComputeFormat, quantizeRow } from "./formats.js";
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, roundF16 } from "./half.js";
export {
  dequantizeKvRowQ8_0,
  KV_Q8_0_BLOCK,
  kvQ8_0RowBytes,
  quantizeKvRowsQ8_0,
} from "./kv-q8_0.js";
export { QK_K } from "./quants-k.js";
export { absmeanScale, quantizeRowTernary } from "./quants-ternary.js";
export { argmaxRow, fmaF32, geluTanh, ReferenceBackend, yarnCorrDims } from "./reference.js";
export { Tensor } from "./tensor.js";
