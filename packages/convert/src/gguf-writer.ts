import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { type GGMLType, RyzansteinError, Tensor, TYPE_INFO } from "@ryzanstein/core-tensor";
import { type GGUFTypedValue, type GGUFValue, GGUFValueType } from "./gguf-types.js";

/** A metadata value for the writer: a plain value (type inferred) or an exactly typed one. */
export type GGUFWriteValue = GGUFValue | GGUFTypedValue;

/** One tensor to write. `data` may be a function so large models stream one tensor at a time. */
export interface GGUFWriteTensor {
  /** Tensor name. */
  name: string;
  /** ggml type id. */
  type: GGMLType;
  /** Row-major shape, outermost first. */
  shape: readonly number[];
  /** The bytes in ggml layout, or a function producing them when the writer reaches this tensor. */
  data: Uint8Array | (() => Uint8Array);
}

/** What a GGUF file holds. */
export interface GGUFWriteSpec {
  /** Metadata by key. `general.alignment` is honoured if given. */
  metadata: Record<string, GGUFWriteValue>;
  /** Tensors in file order. */
  tensors: GGUFWriteTensor[];
  /** GGUF version to write (default 3). */
  version?: 2 | 3;
}

/** Progress of a write, in tensors and bytes. */
export interface WriteProgress {
  /** Tensors written so far. */
  tensorsDone: number;
  /** Tensors in all. */
  tensorsTotal: number;
  /** Data bytes written so far. */
  bytesDone: number;
  /** Data bytes in all. */
  bytesTotal: number;
}

const TYPED_ARRAY_TYPES: Array<[abstract new (...args: never[]) => unknown, GGUFValueType]> = [
  [Uint8Array, GGUFValueType.UINT8],
  [Int8Array, GGUFValueType.INT8],
  [Uint16Array, GGUFValueType.UINT16],
  [Int16Array, GGUFValueType.INT16],
  [Uint32Array, GGUFValueType.UINT32],
  [Int32Array, GGUFValueType.INT32],
  [Float32Array, GGUFValueType.FLOAT32],
  [Float64Array, GGUFValueType.FLOAT64],
  [BigUint64Array, GGUFValueType.UINT64],
  [BigInt64Array, GGUFValueType.INT64],
];

function isTyped(v: GGUFWriteValue): v is GGUFTypedValue {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && "type" in v;
}

/** Infers the GGUF type of a plain value (integers → u32/i32, other numbers → f32). */
function toTyped(key: string, v: GGUFWriteValue): GGUFTypedValue {
  if (isTyped(v)) return v;
  if (typeof v === "string") return { type: GGUFValueType.STRING, value: v };
  if (typeof v === "boolean") return { type: GGUFValueType.BOOL, value: v };
  if (typeof v === "bigint") return { type: v < 0n ? GGUFValueType.INT64 : GGUFValueType.UINT64, value: v };
  if (typeof v === "number") {
    if (Number.isInteger(v) && v >= 0 && v < 2 ** 32) return { type: GGUFValueType.UINT32, value: v };
    if (Number.isInteger(v) && v < 0 && v >= -(2 ** 31)) return { type: GGUFValueType.INT32, value: v };
    return { type: GGUFValueType.FLOAT32, value: v };
  }
  if (ArrayBuffer.isView(v)) {
    const hit = TYPED_ARRAY_TYPES.find(([C]) => v instanceof C);
    if (!hit) throw new RyzansteinError("INVALID_ARGUMENT", `metadata ${key}: unsupported typed array`);
    return { type: GGUFValueType.ARRAY, elementType: hit[1], value: v };
  }
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === "string"))
      return { type: GGUFValueType.ARRAY, elementType: GGUFValueType.STRING, value: v };
    if (v.every((x) => typeof x === "boolean"))
      return { type: GGUFValueType.ARRAY, elementType: GGUFValueType.BOOL, value: v };
    if (v.every((x) => typeof x === "number")) {
      const ints = (v as number[]).every((x) => Number.isInteger(x) && x >= -(2 ** 31) && x < 2 ** 31);
      return {
        type: GGUFValueType.ARRAY,
        elementType: ints ? GGUFValueType.INT32 : GGUFValueType.FLOAT32,
        value: v,
      };
    }
  }
  throw new RyzansteinError("INVALID_ARGUMENT", `metadata ${key}: cannot infer a GGUF type`);
}

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private readonly encoder = new TextEncoder();

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  scalar(type: GGUFValueType, v: number | bigint | boolean): void {
    this.reserve(8);
    const at = this.length;
    const dv = this.view;
    switch (type) {
      case GGUFValueType.UINT8:
        dv.setUint8(at, Number(v));
        this.length += 1;
        break;
      case GGUFValueType.INT8:
        dv.setInt8(at, Number(v));
        this.length += 1;
        break;
      case GGUFValueType.BOOL:
        dv.setUint8(at, v ? 1 : 0);
        this.length += 1;
        break;
      case GGUFValueType.UINT16:
        dv.setUint16(at, Number(v), true);
        this.length += 2;
        break;
      case GGUFValueType.INT16:
        dv.setInt16(at, Number(v), true);
        this.length += 2;
        break;
      case GGUFValueType.UINT32:
        dv.setUint32(at, Number(v), true);
        this.length += 4;
        break;
      case GGUFValueType.INT32:
        dv.setInt32(at, Number(v), true);
        this.length += 4;
        break;
      case GGUFValueType.FLOAT32:
        dv.setFloat32(at, Number(v), true);
        this.length += 4;
        break;
      case GGUFValueType.UINT64:
        dv.setBigUint64(at, BigInt(v), true);
        this.length += 8;
        break;
      case GGUFValueType.INT64:
        dv.setBigInt64(at, BigInt(v), true);
        this.length += 8;
        break;
      case GGUFValueType.FLOAT64:
        dv.setFloat64(at, Number(v), true);
        this.length += 8;
        break;
      default:
        throw new RyzansteinError("INVALID_ARGUMENT", `not a scalar GGUF type: ${type}`);
    }
  }
  u32(v: number): void {
    this.scalar(GGUFValueType.UINT32, v);
  }
  u64(v: number | bigint): void {
    this.scalar(GGUFValueType.UINT64, BigInt(v));
  }
  string(s: string): void {
    const b = this.encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  value(key: string, t: GGUFTypedValue): void {
    if (t.type === GGUFValueType.STRING) {
      this.string(t.value as string);
      return;
    }
    if (t.type !== GGUFValueType.ARRAY) {
      this.scalar(t.type, t.value as number);
      return;
    }
    const items = t.value as ArrayLike<unknown>;
    const et = t.elementType ?? GGUFValueType.INT32;
    this.u32(et);
    this.u64(items.length);
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as GGUFValue;
      if (et === GGUFValueType.STRING) this.string(item as string);
      else if (et === GGUFValueType.ARRAY) this.value(key, toTyped(key, item));
      else this.scalar(et, item as number);
    }
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function header(spec: GGUFWriteSpec): {
  head: Uint8Array;
  alignment: number;
  offsets: number[];
  sizes: number[];
} {
  const alignment = Number((spec.metadata["general.alignment"] as GGUFValue | undefined) ?? 32);
  const sink = new ByteSink();
  sink.bytes(new TextEncoder().encode("GGUF"));
  sink.u32(spec.version ?? 3);
  sink.u64(spec.tensors.length);
  const entries = Object.entries(spec.metadata);
  sink.u64(entries.length);
  for (const [key, v] of entries) {
    const t =
      key === "general.alignment" ? { type: GGUFValueType.UINT32, value: alignment } : toTyped(key, v);
    sink.string(key);
    sink.u32(t.type);
    sink.value(key, t);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let offset = 0;
  for (const t of spec.tensors) {
    const info = TYPE_INFO[t.type];
    if (!info) throw new RyzansteinError("UNKNOWN_TENSOR_TYPE", `tensor ${t.name}: unknown type ${t.type}`);
    const size = Tensor.byteSize(t.type, t.shape);
    sink.string(t.name);
    sink.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) sink.u64(t.shape[d]);
    sink.u32(t.type);
    sink.u64(offset);
    offsets.push(offset);
    sizes.push(size);
    offset += Math.ceil(size / alignment) * alignment;
  }
  const pad = (alignment - (sink.length % alignment)) % alignment;
  sink.bytes(new Uint8Array(pad));
  return { head: sink.result(), alignment, offsets, sizes };
}

function tensorBytes(t: GGUFWriteTensor, expected: number): Uint8Array {
  const data = typeof t.data === "function" ? t.data() : t.data;
  if (data.byteLength !== expected) {
    throw new RyzansteinError(
      "SHAPE_MISMATCH",
      `tensor ${t.name}: ${data.byteLength} bytes given, ${TYPE_INFO[t.type].name}[${t.shape}] needs ${expected}`,
    );
  }
  return data;
}

/** Serializes a GGUF file into memory (for tests and small models). */
export function serializeGGUF(spec: GGUFWriteSpec): Uint8Array {
  const { head, alignment, offsets, sizes } = header(spec);
  const last = offsets.length
    ? offsets[offsets.length - 1] + Math.ceil(sizes[sizes.length - 1] / alignment) * alignment
    : 0;
  const out = new Uint8Array(head.length + last);
  out.set(head);
  spec.tensors.forEach((t, i) => {
    out.set(tensorBytes(t, sizes[i]), head.length + offsets[i]);
  });
  return out;
}

/**
 * Writes a GGUF file, streaming one tensor at a time, to `path` atomically: the bytes go to a
 * temporary file beside it that is renamed into place only when complete, so an interrupted write
 * never leaves a partial file under the final name.
 */
export function writeGGUF(path: string, spec: GGUFWriteSpec, onProgress?: (p: WriteProgress) => void): void {
  const { head, alignment, offsets, sizes } = header(spec);
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const bytesTotal = sizes.reduce((a, b) => a + b, 0);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w");
    writeSync(fd, head);
    let pos = head.length;
    let bytesDone = 0;
    spec.tensors.forEach((t, i) => {
      const start = head.length + offsets[i];
      if (start > pos) writeSync(fd as number, new Uint8Array(start - pos));
      const data = tensorBytes(t, sizes[i]);
      writeSync(fd as number, data);
      pos = start + data.byteLength;
      bytesDone += data.byteLength;
      onProgress?.({ tensorsDone: i + 1, tensorsTotal: spec.tensors.length, bytesDone, bytesTotal });
    });
    const end = Math.ceil(pos / alignment) * alignment;
    if (end > pos) writeSync(fd, new Uint8Array(end - pos));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    if (e instanceof RyzansteinError) throw e;
    throw new RyzansteinError("IO_ERROR", `cannot write ${path}: ${(e as Error).message}`, { cause: e });
  }
}
