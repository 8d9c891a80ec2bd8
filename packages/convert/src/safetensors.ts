import { closeSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { GGMLType, RyzansteinError, Tensor } from "@ryzanstein/core-tensor";
import { readRange } from "./io.js";

/** safetensors dtype names and their element sizes. */
const DTYPE_SIZES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** dtypes the engine computes with, mapped to ggml types. */
const DTYPE_TO_GGML: Record<string, GGMLType> = {
  F32: GGMLType.F32,
  F16: GGMLType.F16,
  BF16: GGMLType.BF16,
};

/** One tensor entry of a safetensors header. */
export interface SafetensorsTensorInfo {
  /** Tensor name. */
  name: string;
  /** safetensors dtype (`F32`, `BF16`, ...). */
  dtype: string;
  /** Row-major shape. */
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  /** Bytes of data. */
  byteLength: number;
}

/** A parsed safetensors file with zero-copy tensor views. */
export interface SafetensorsFile {
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
  /** Tensors in header order. */
  tensors: SafetensorsTensorInfo[];
  /** File bytes. */
  bytes: Uint8Array;
  /** A `Tensor` view (F32, F16 and BF16 only). */
  tensor(name: string): Tensor;
}

const MAX_HEADER = 100 * 1024 * 1024;

/** Options of {@link parseSafetensors}. */
export interface ParseSafetensorsOptions {
  /** File name for messages. */
  file?: string;
  /** Size of the whole file when `bytes` holds only its start (lazy reading). */
  fileSize?: number;
  /** Reads `length` bytes at `offset` for tensors beyond `bytes` (lazy reading). */
  read?: (offset: number, length: number) => Uint8Array;
}

/**
 * Parses a safetensors file in memory: an 8-byte little-endian header length, a JSON header, then
 * the data. Checks the header bounds, JSON, dtypes, shapes against byte ranges, and overlaps.
 */
export function parseSafetensors(bytes: Uint8Array, options: ParseSafetensorsOptions = {}): SafetensorsFile {
  const file = options.file;
  const fileSize = options.fileSize ?? bytes.byteLength;
  if (bytes.byteLength < 8) {
    throw new RyzansteinError("TRUNCATED", "file is shorter than the 8-byte safetensors header length", {
      file,
    });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(fileSize - 8)) {
    throw new RyzansteinError(
      "TRUNCATED",
      `safetensors header length ${headerLen} runs past the end of the file (${fileSize} bytes)`,
      { file },
    );
  }
  if (headerLen > BigInt(MAX_HEADER)) {
    throw new RyzansteinError("ABSURD_SIZE", `safetensors header length ${headerLen} is absurd`, { file });
  }
  const hl = Number(headerLen);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + hl)));
  } catch (e) {
    throw new RyzansteinError(
      "BAD_METADATA",
      `safetensors header is not valid JSON: ${(e as Error).message}`,
      { file },
    );
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new RyzansteinError("BAD_METADATA", "safetensors header is not a JSON object", { file });
  }
  const base = 8 + hl;
  const dataLen = fileSize - base;
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      for (const [k, v] of Object.entries((entry ?? {}) as Record<string, unknown>)) metadata[k] = String(v);
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e?.dtype !== "string" || !(e.dtype in DTYPE_SIZES)) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `tensor ${name}: unknown dtype ${String(e?.dtype)}`,
        { file },
      );
    }
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new RyzansteinError("BAD_METADATA", `tensor ${name}: invalid shape`, { file });
    }
    const offs = e.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      offs[1] < offs[0]
    ) {
      throw new RyzansteinError("BAD_METADATA", `tensor ${name}: invalid data_offsets`, { file });
    }
    const elements = (e.shape as number[]).reduce((a, b) => a * b, 1);
    const byteLength = offs[1] - offs[0];
    if (elements * DTYPE_SIZES[e.dtype] !== byteLength) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `tensor ${name}: shape [${e.shape}] of ${e.dtype} needs ${elements * DTYPE_SIZES[e.dtype]} bytes, data_offsets give ${byteLength}`,
        { file },
      );
    }
    if (offs[1] > dataLen) {
      throw new RyzansteinError(
        "TRUNCATED",
        `tensor ${name}: data ends at ${offs[1]}, past the ${dataLen} data bytes`,
        { file },
      );
    }
    tensors.push({ name, dtype: e.dtype, shape: e.shape as number[], offset: base + offs[0], byteLength });
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1].offset + sorted[i - 1].byteLength > sorted[i].offset) {
      throw new RyzansteinError(
        "OUT_OF_BOUNDS",
        `tensors ${sorted[i - 1].name} and ${sorted[i].name} overlap`,
        { file },
      );
    }
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    metadata,
    tensors,
    bytes,
    tensor(name: string): Tensor {
      const t = byName.get(name);
      if (!t) throw new RyzansteinError("MISSING_METADATA", `tensor ${name} not found`, { file });
      const type = DTYPE_TO_GGML[t.dtype];
      if (type === undefined) {
        throw new RyzansteinError(
          "UNSUPPORTED_TENSOR_TYPE",
          `tensor ${name}: dtype ${t.dtype} is not supported`,
          { file },
        );
      }
      const shape = t.shape.length ? t.shape : [1];
      const data =
        t.offset + t.byteLength <= bytes.byteLength || !options.read
          ? bytes.subarray(t.offset, t.offset + t.byteLength)
          : options.read(t.offset, t.byteLength);
      return new Tensor(type, shape, data, name);
    },
  };
}

/** Reads and parses a safetensors file from disk. */
export function readSafetensors(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new RyzansteinError("IO_ERROR", `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  return parseSafetensors(bytes, { file: path });
}

const GGML_TO_DTYPE: Partial<Record<GGMLType, string>> = {
  [GGMLType.F32]: "F32",
  [GGMLType.F16]: "F16",
  [GGMLType.BF16]: "BF16",
};

/** One tensor for {@link writeSafetensors}; `data` may be produced on demand to stream large models. */
export interface SafetensorsWriteTensor {
  /** Tensor name. */
  name: string;
  /** F32, F16 or BF16. */
  type: GGMLType;
  /** Row-major shape. */
  shape: readonly number[];
  /** The bytes, or a function producing them when the writer reaches this tensor. */
  data: Uint8Array | (() => Uint8Array);
}

/**
 * Writes a safetensors file, one tensor at a time, to a temporary name renamed into place at the
 * end (an interrupted write leaves nothing under `path`).
 */
export function writeSafetensors(
  path: string,
  tensors: SafetensorsWriteTensor[],
  metadata: Record<string, string> = {},
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const dtype = GGML_TO_DTYPE[t.type];
    if (!dtype)
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `tensor ${t.name}: safetensors holds F32, F16 or BF16 only`,
      );
    const size = Tensor.byteSize(t.type, t.shape);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, "utf8");
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w");
    writeSync(fd, head);
    for (const t of tensors) {
      const data = typeof t.data === "function" ? t.data() : t.data;
      if (data.byteLength !== Tensor.byteSize(t.type, t.shape)) {
        throw new RyzansteinError(
          "SHAPE_MISMATCH",
          `tensor ${t.name}: ${data.byteLength} bytes for shape [${t.shape}]`,
        );
      }
      writeSync(fd, data);
    }
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

/**
 * Opens a safetensors file reading only its header; each tensor's bytes are read from disk when
 * asked for, into a buffer of their own. Converting a model this way keeps one tensor in memory.
 */
export function openSafetensorsLazy(path: string): SafetensorsFile {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new RyzansteinError("IO_ERROR", `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (size < 8) return parseSafetensors(readRange(path, 0, size), { file: path });
  const headerLen = Number(new DataView(readRange(path, 0, 8).buffer).getBigUint64(0, true));
  const prefix =
    headerLen <= size - 8 && headerLen <= MAX_HEADER
      ? readRange(path, 0, 8 + headerLen)
      : readRange(path, 0, 8);
  return parseSafetensors(prefix, { file: path, fileSize: size, read: (o, n) => readRange(path, o, n) });
}
