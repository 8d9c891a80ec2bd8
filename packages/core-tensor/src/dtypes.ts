/**
 * ggml tensor type ids, exactly as GGUF files store them (`enum ggml_type` in ggml.h).
 * Ids 4, 5 and 31-33, 36-38 were removed from ggml and are unused.
 */
export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
}

/** Name and storage geometry of one ggml type: `blockSize` elements occupy `typeSize` bytes. */
export interface TypeInfo {
  /** ggml's lower-case name, e.g. `q4_0`. */
  readonly name: string;
  /** Elements per block (1 for plain scalar types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

/** Storage geometry of every ggml type id, from ggml's `type_traits` table. */
export const TYPE_INFO: Readonly<Record<GGMLType, TypeInfo>> = {
  [GGMLType.F32]: { name: "f32", blockSize: 1, typeSize: 4 },
  [GGMLType.F16]: { name: "f16", blockSize: 1, typeSize: 2 },
  [GGMLType.Q4_0]: { name: "q4_0", blockSize: 32, typeSize: 18 },
  [GGMLType.Q4_1]: { name: "q4_1", blockSize: 32, typeSize: 20 },
  [GGMLType.Q5_0]: { name: "q5_0", blockSize: 32, typeSize: 22 },
  [GGMLType.Q5_1]: { name: "q5_1", blockSize: 32, typeSize: 24 },
  [GGMLType.Q8_0]: { name: "q8_0", blockSize: 32, typeSize: 34 },
  [GGMLType.Q8_1]: { name: "q8_1", blockSize: 32, typeSize: 36 },
  [GGMLType.Q2_K]: { name: "q2_K", blockSize: 256, typeSize: 84 },
  [GGMLType.Q3_K]: { name: "q3_K", blockSize: 256, typeSize: 110 },
  [GGMLType.Q4_K]: { name: "q4_K", blockSize: 256, typeSize: 144 },
  [GGMLType.Q5_K]: { name: "q5_K", blockSize: 256, typeSize: 176 },
  [GGMLType.Q6_K]: { name: "q6_K", blockSize: 256, typeSize: 210 },
  [GGMLType.Q8_K]: { name: "q8_K", blockSize: 256, typeSize: 292 },
  [GGMLType.IQ2_XXS]: { name: "iq2_xxs", blockSize: 256, typeSize: 66 },
  [GGMLType.IQ2_XS]: { name: "iq2_xs", blockSize: 256, typeSize: 74 },
  [GGMLType.IQ3_XXS]: { name: "iq3_xxs", blockSize: 256, typeSize: 98 },
  [GGMLType.IQ1_S]: { name: "iq1_s", blockSize: 256, typeSize: 50 },
  [GGMLType.IQ4_NL]: { name: "iq4_nl", blockSize: 32, typeSize: 18 },
  [GGMLType.IQ3_S]: { name: "iq3_s", blockSize: 256, typeSize: 110 },
  [GGMLType.IQ2_S]: { name: "iq2_s", blockSize: 256, typeSize: 82 },
  [GGMLType.IQ4_XS]: { name: "iq4_xs", blockSize: 256, typeSize: 136 },
  [GGMLType.I8]: { name: "i8", blockSize: 1, typeSize: 1 },
  [GGMLType.I16]: { name: "i16", blockSize: 1, typeSize: 2 },
  [GGMLType.I32]: { name: "i32", blockSize: 1, typeSize: 4 },
  [GGMLType.I64]: { name: "i64", blockSize: 1, typeSize: 8 },
  [GGMLType.F64]: { name: "f64", blockSize: 1, typeSize: 8 },
  [GGMLType.IQ1_M]: { name: "iq1_m", blockSize: 256, typeSize: 56 },
  [GGMLType.BF16]: { name: "bf16", blockSize: 1, typeSize: 2 },
  [GGMLType.TQ1_0]: { name: "tq1_0", blockSize: 256, typeSize: 54 },
  [GGMLType.TQ2_0]: { name: "tq2_0", blockSize: 256, typeSize: 66 },
  [GGMLType.MXFP4]: { name: "mxfp4", blockSize: 32, typeSize: 17 },
};

/** True when `id` is a ggml type id this library knows by name and size. */
export function isKnownType(id: number): id is GGMLType {
  return Object.hasOwn(TYPE_INFO, id);
}

/** ggml's name of a type id (`q4_0`), or `type#<id>` for an unknown id. */
export function typeName(id: number): string {
  return isKnownType(id) ? TYPE_INFO[id].name : `type#${id}`;
}

/** Looks a type up by its ggml name, case-insensitively (`Q4_0`, `q4_k`, `bf16`). */
export function typeFromName(name: string): GGMLType | undefined {
  const lower = name.toLowerCase();
  for (const [id, info] of Object.entries(TYPE_INFO)) {
    if (info.name.toLowerCase() === lower) return Number(id) as GGMLType;
  }
  return undefined;
}

/** Bytes taken by one row of `cols` elements of type `type`; `cols` must be a multiple of the block size. */
export function rowBytes(type: GGMLType, cols: number): number {
  const info = TYPE_INFO[type];
  return (cols / info.blockSize) * info.typeSize;
}

/**
 * `general.file_type` (llama.cpp's `llama_ftype`) of a model whose matrices are all of `type`, or
 * `undefined` for activation-only formats (Q8_1, Q8_K) and types llama.cpp has no file type for.
 * K-quants map to the "_M"/"_S"-less base ids llama.cpp uses for a uniform file (Q3_K → Q3_K_M,
 * Q4_K → Q4_K_M, Q5_K → Q5_K_M): llama.cpp reads the id only to describe the file.
 */
export function llamaFileType(type: GGMLType): number | undefined {
  return LLAMA_FILE_TYPE[type];
}

const LLAMA_FILE_TYPE: Partial<Record<GGMLType, number>> = {
  [GGMLType.F32]: 0,
  [GGMLType.F16]: 1,
  [GGMLType.Q4_0]: 2,
  [GGMLType.Q4_1]: 3,
  [GGMLType.Q8_0]: 7,
  [GGMLType.Q5_0]: 8,
  [GGMLType.Q5_1]: 9,
  [GGMLType.Q2_K]: 10,
  [GGMLType.Q3_K]: 12,
  [GGMLType.Q4_K]: 15,
  [GGMLType.Q5_K]: 17,
  [GGMLType.Q6_K]: 18,
  [GGMLType.BF16]: 32,
  [GGMLType.TQ1_0]: 36,
  [GGMLType.TQ2_0]: 37,
};
