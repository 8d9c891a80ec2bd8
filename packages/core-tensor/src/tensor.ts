import { GGMLType, TYPE_INFO, typeName } from "./dtypes.js";
import { RyzansteinError } from "./errors.js";
import { FORMAT_TRAITS, isComputeFormat } from "./formats.js";

/**
 * An n-dimensional tensor over raw bytes in ggml's storage layout.
 *
 * `shape` is row-major, outermost first (`[rows, cols]` for a matrix), the reverse of ggml's `ne`.
 * `data` may be a view into a memory-mapped or read-once model file: tensors never copy it.
 */
export class Tensor {
  /** Storage format of the elements. */
  readonly type: GGMLType;
  /** Row-major shape, outermost dimension first. */
  readonly shape: readonly number[];
  /** The bytes, in ggml's layout for `type`. */
  readonly data: Uint8Array;
  /** Name from the model file, or empty. */
  readonly name: string;

  constructor(type: GGMLType, shape: readonly number[], data: Uint8Array, name = "") {
    const info = TYPE_INFO[type];
    if (!info) throw new RyzansteinError("UNKNOWN_TENSOR_TYPE", `unknown tensor type id ${type}`);
    if (shape.length === 0 || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `tensor ${name || "(unnamed)"} has invalid shape [${shape}]`,
      );
    }
    const cols = shape[shape.length - 1];
    if (cols % info.blockSize !== 0) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `tensor ${name || "(unnamed)"}: row length ${cols} is not a multiple of the ${info.name} block size ${info.blockSize}`,
      );
    }
    const expected = Tensor.byteSize(type, shape);
    if (data.byteLength !== expected) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `tensor ${name || "(unnamed)"}: ${data.byteLength} bytes given, ${typeName(type)}[${shape}] needs ${expected}`,
      );
    }
    this.type = type;
    this.shape = Object.freeze([...shape]);
    this.data = data;
    this.name = name;
  }

  /** Bytes needed to store a tensor of this type and shape. */
  static byteSize(type: GGMLType, shape: readonly number[]): number {
    const info = TYPE_INFO[type];
    const elements = shape.reduce((a, b) => a * b, 1);
    return (elements / info.blockSize) * info.typeSize;
  }

  /** Builds a tensor of `type` from float values, quantizing each row with the reference rounding. */
  static fromF32(
    shape: readonly number[],
    values: Float32Array,
    type: GGMLType = GGMLType.F32,
    name = "",
  ): Tensor {
    const elements = shape.reduce((a, b) => a * b, 1);
    if (values.length !== elements) {
      throw new RyzansteinError("SHAPE_MISMATCH", `${values.length} values given for shape [${shape}]`);
    }
    if (!isComputeFormat(type)) {
      throw new RyzansteinError("UNSUPPORTED_TENSOR_TYPE", `cannot encode ${typeName(type)} tensors`);
    }
    const data = new Uint8Array(Tensor.byteSize(type, shape));
    const cols = shape[shape.length - 1];
    const rb = (cols / TYPE_INFO[type].blockSize) * TYPE_INFO[type].typeSize;
    for (let r = 0; r < elements / cols; r++) {
      FORMAT_TRAITS[type].quantizeRowRef(values, r * cols, data, r * rb, cols);
    }
    return new Tensor(type, shape, data, name);
  }

  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Length of the innermost dimension. */
  get cols(): number {
    return this.shape[this.shape.length - 1];
  }

  /** Number of rows: the product of all but the innermost dimension. */
  get rows(): number {
    return this.size / this.cols;
  }

  /** Bytes per row. */
  get rowBytes(): number {
    const info = TYPE_INFO[this.type];
    return (this.cols / info.blockSize) * info.typeSize;
  }

  /**
   * Byte strides per dimension. The innermost stride is the bytes per element, fractional for
   * block formats (a block of 32 Q4_0 values takes 18 bytes: 0.5625).
   */
  get strides(): number[] {
    const info = TYPE_INFO[this.type];
    const strides = new Array<number>(this.shape.length);
    strides[this.shape.length - 1] = info.typeSize / info.blockSize;
    let s = this.rowBytes;
    for (let d = this.shape.length - 2; d >= 0; d--) {
      strides[d] = s;
      s *= this.shape[d];
    }
    return strides;
  }

  /** The bytes of row `i` (a view, no copy). */
  row(i: number): Uint8Array {
    const rb = this.rowBytes;
    return this.data.subarray(i * rb, (i + 1) * rb);
  }

  /** Decodes the whole tensor to floats (a copy). */
  toF32(): Float32Array {
    if (!isComputeFormat(this.type)) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `cannot decode ${typeName(this.type)} tensor ${this.name}`,
      );
    }
    const out = new Float32Array(this.size);
    const traits = FORMAT_TRAITS[this.type];
    const rb = this.rowBytes;
    for (let r = 0; r < this.rows; r++)
      traits.dequantizeRow(this.data, r * rb, out, r * this.cols, this.cols);
    return out;
  }
}
