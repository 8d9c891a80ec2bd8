import { RyzansteinError } from "./errors.js";
import { f16ToF32, f32ToF16 } from "./half.js";
import { f, nearestInt } from "./quant-utils.js";

/** Values per Q8_0 block of a quantized KV cache row (one f16 scale each). */
export const KV_Q8_0_BLOCK = 32;

/**
 * Bytes of one row of a Q8_0 KV cache holding `rowSize` values (`nKvHeads × headDim`, a multiple
 * of 32). A row is llama.cpp's `block_q8_0` split into a struct of arrays: first the `rowSize`
 * int8 quants in order, then one little-endian f16 scale per 32 values. A value is
 * `quant × scale`; keeping the quants of a row contiguous lets attention load a head's values
 * with plain vector loads.
 */
export function kvQ8_0RowBytes(rowSize: number): number {
  if (!Number.isInteger(rowSize) || rowSize <= 0 || rowSize % KV_Q8_0_BLOCK !== 0)
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `a Q8_0 KV cache needs rows of a positive multiple of 32 values, got ${rowSize}`,
    );
  return rowSize + 2 * (rowSize / KV_Q8_0_BLOCK);
}

/**
 * Quantizes `rows` rows of `rowSize` floats from `src` into rows `dstRow..` of a Q8_0 KV cache
 * (layout in {@link kvQ8_0RowBytes}), as llama.cpp's CPU backend quantizes K/V into a `q8_0`
 * cache (`quantize_row_q8_0`, x86 build): per 32 values the scale `amax/127` stored as f16, and
 * each value times `127/amax` rounded to nearest, halves to even.
 */
export function quantizeKvRowsQ8_0(
  dst: Uint8Array,
  dstRow: number,
  src: Float32Array,
  rows: number,
  rowSize: number,
): void {
  const rowBytes = kvQ8_0RowBytes(rowSize);
  if ((dstRow + rows) * rowBytes > dst.length || rows * rowSize > src.length)
    throw new RyzansteinError("OUT_OF_BOUNDS", "quantizeKvQ8_0: rows outside dst or src");
  for (let r = 0; r < rows; r++) {
    const o = (dstRow + r) * rowBytes;
    for (let b = 0; b < rowSize / KV_Q8_0_BLOCK; b++) {
      const x = r * rowSize + b * KV_Q8_0_BLOCK;
      let amax = 0;
      for (let j = 0; j < KV_Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(src[x + j]));
      const inv = amax ? f(127 / amax) : 0;
      const d = f32ToF16(f(amax / 127));
      dst[o + rowSize + 2 * b] = d & 0xff;
      dst[o + rowSize + 2 * b + 1] = d >> 8;
      for (let j = 0; j < KV_Q8_0_BLOCK; j++)
        dst[o + b * KV_Q8_0_BLOCK + j] = nearestInt(f(src[x + j] * inv)) & 0xff;
    }
  }
}

/** Decodes row `row` of a Q8_0 KV cache (`rowSize` values) into `dst[dstOffset..]`. */
export function dequantizeKvRowQ8_0(
  src: Uint8Array,
  row: number,
  rowSize: number,
  dst: Float32Array,
  dstOffset = 0,
): void {
  const o = row * kvQ8_0RowBytes(rowSize);
  for (let b = 0; b < rowSize / KV_Q8_0_BLOCK; b++) {
    const d = f16ToF32(src[o + rowSize + 2 * b] | (src[o + rowSize + 2 * b + 1] << 8));
    for (let j = 0; j < KV_Q8_0_BLOCK; j++) {
      const q = (src[o + b * KV_Q8_0_BLOCK + j] << 24) >> 24;
      dst[dstOffset + b * KV_Q8_0_BLOCK + j] = q * d;
    }
  }
}
