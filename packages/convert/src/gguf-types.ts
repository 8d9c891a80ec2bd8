import type { GGMLType } from "@ryzanstein/core-tensor";

/** GGUF metadata value type ids (`enum gguf_type`). */
export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/**
 * A metadata value as the reader returns it: numbers for 8-32 bit integers and floats, `bigint` for
 * 64-bit integers, strings, booleans, and arrays (typed arrays for numeric element types, `string[]`
 * for strings, `boolean[]` for bools, nested arrays as `GGUFValue[]`).
 */
export type GGUFValue =
  | number
  | bigint
  | string
  | boolean
  | string[]
  | boolean[]
  | GGUFValue[]
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

/** A metadata value with its exact GGUF type, as stored in the file (and as the writer takes it). */
export interface GGUFTypedValue {
  /** The value's type. */
  type: GGUFValueType;
  /** For arrays: the element type. */
  elementType?: GGUFValueType;
  /** The value. */
  value: GGUFValue;
}

/** One tensor's entry in a GGUF file's tensor table. */
export interface GGUFTensorInfo {
  /** Tensor name (`blk.0.attn_q.weight`). */
  name: string;
  /** ggml type id. */
  type: GGMLType;
  /** Row-major shape, outermost first (GGUF stores ggml's `ne`, innermost first; this is reversed). */
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  /** Bytes of data. */
  byteLength: number;
}
