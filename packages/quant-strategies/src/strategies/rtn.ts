import { type ComputeFormat, FORMAT_TRAITS } from "@ryzanstein/core-tensor";
import { matrixBytes } from "../format-choice.js";

/** Round-to-nearest: every row through the format's reference quantizer (llama-quantize without an imatrix). */
export function rtnQuantize(
  values: Float32Array,
  rows: number,
  cols: number,
  type: ComputeFormat,
): Uint8Array {
  const traits = FORMAT_TRAITS[type];
  const out = new Uint8Array(matrixBytes(type, rows, cols));
  const rowBytes = out.length / rows;
  for (let r = 0; r < rows; r++) traits.quantizeRowRef(values, r * cols, out, r * rowBytes, cols);
  return out;
}

/** Decodes a `[rows, cols]` matrix of `type` to floats. */
export function dequantizeMatrix(
  data: Uint8Array,
  rows: number,
  cols: number,
  type: ComputeFormat,
): Float32Array {
  const traits = FORMAT_TRAITS[type];
  const out = new Float32Array(rows * cols);
  const rowBytes = data.length / rows;
  for (let r = 0; r < rows; r++) traits.dequantizeRow(data, r * rowBytes, out, r * cols, cols);
  return out;
}
