import { readFileSync, statSync } from "node:fs";
import { type GGMLType, isKnownType, RyzansteinError, Tensor, TYPE_INFO } from "@ryzanstein/core-tensor";
import { type GGUFTensorInfo, type GGUFTypedValue, type GGUFValue, GGUFValueType } from "./gguf-types.js";
import { readRange } from "./io.js";
import { ModelSource } from "./model-source.js";

const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
const MAX_DIMS = 4;
const DEFAULT_ALIGNMENT = 32;
const MAX_STRING = 1 << 30;
const MAX_NESTING = 8;

/** Options for {@link parseGGUF}. */
export interface ParseGGUFOptions {
  /** File name for error messages. */
  file?: string;
  /** Size of the whole file when `bytes` holds only its start (lazy reading). */
  fileSize?: number;
  /** Reads `length` bytes at `offset` for tensors beyond `bytes` (lazy reading). */
  read?: (offset: number, length: number) => Uint8Array;
}

/** A parsed GGUF file: metadata, tensor table, and zero-copy access to tensor data. */
export class GGUFFile extends ModelSource {
  /** GGUF format version (2 or 3). */
  readonly version: number;
  /** Metadata values by key. */
  readonly metadata: Record<string, GGUFValue>;
  /** Metadata with exact GGUF types, for faithful re-writing. */
  readonly typedMetadata: Record<string, GGUFTypedValue>;
  /** Tensor table in file order. */
  readonly tensors: GGUFTensorInfo[];
  /** Alignment of the data section (`general.alignment`, default 32). */
  readonly alignment: number;
  /** Absolute byte offset of the data section. */
  readonly dataOffset: number;
  /** The file's bytes (possibly a memory map). */
  readonly bytes: Uint8Array;
  /** File name, when known, for messages. */
  readonly file: string | undefined;
  private readonly read: ((offset: number, length: number) => Uint8Array) | undefined;

  /** @internal Use {@link parseGGUF}. */
  constructor(init: {
    version: number;
    typedMetadata: Record<string, GGUFTypedValue>;
    tensors: GGUFTensorInfo[];
    alignment: number;
    dataOffset: number;
    bytes: Uint8Array;
    file: string | undefined;
    read?: (offset: number, length: number) => Uint8Array;
  }) {
    super();
    this.version = init.version;
    this.typedMetadata = init.typedMetadata;
    this.metadata = Object.fromEntries(Object.entries(init.typedMetadata).map(([k, v]) => [k, v.value]));
    this.tensors = init.tensors;
    this.alignment = init.alignment;
    this.dataOffset = init.dataOffset;
    this.bytes = init.bytes;
    this.file = init.file;
    this.read = init.read;
  }

  /** Tensor table entry by name (with its absolute file offset), or undefined. */
  override info(name: string): GGUFTensorInfo | undefined {
    return super.info(name) as GGUFTensorInfo | undefined;
  }

  /** The metadata with its types as stored. */
  writableMetadata(): Record<string, GGUFTypedValue> {
    return this.typedMetadata;
  }

  /** A zero-copy `Tensor` view of a tensor's data. Throws MISSING_METADATA for an unknown name. */
  tensor(name: string): Tensor {
    const info = this.info(name);
    if (!info) return this.missingTensor(name);
    const end = info.offset + info.byteLength;
    const data =
      end <= this.bytes.byteLength || !this.read
        ? this.bytes.subarray(info.offset, end)
        : this.read(info.offset, info.byteLength);
    return new Tensor(info.type, info.shape, data, name);
  }
}

/** Bounds-checked little-endian reader over the file bytes. */
class Cursor {
  pos = 0;
  private readonly view: DataView;
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });

  constructor(
    readonly bytes: Uint8Array,
    readonly file: string | undefined,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.bytes.byteLength) {
      throw new RyzansteinError(
        "TRUNCATED",
        `file ends inside ${what} (needs ${n} bytes at offset ${this.pos}, file has ${this.bytes.byteLength})`,
        { file: this.file },
      );
    }
  }

  u8(): number {
    this.need(1, "a u8");
    return this.view.getUint8(this.pos++);
  }
  u32(what = "a u32"): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(what = "a u64"): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A u64 that must be a count of things, each at least `minBytes` long in the rest of the file. */
  count(what: string, minBytes: number): number {
    const v = this.u64(what);
    const left = this.bytes.byteLength - this.pos;
    if (v > 0xffffffffn) {
      throw new RyzansteinError("ABSURD_SIZE", `${what} is ${v}, which is absurd`, { file: this.file });
    }
    if (v > BigInt(Math.floor(left / Math.max(1, minBytes)))) {
      throw new RyzansteinError(
        "TRUNCATED",
        `${what} is ${v}, more than the ${left} bytes left in the file can hold`,
        {
          file: this.file,
        },
      );
    }
    return Number(v);
  }
  string(what: string): string {
    const len = this.u64(`the length of ${what}`);
    if (len > BigInt(MAX_STRING)) {
      throw new RyzansteinError("ABSURD_SIZE", `${what} claims a length of ${len} bytes`, {
        file: this.file,
      });
    }
    const n = Number(len);
    this.need(n, what);
    const s = this.decoder.decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

const SCALAR_SIZES: Partial<Record<GGUFValueType, number>> = {
  [GGUFValueType.UINT8]: 1,
  [GGUFValueType.INT8]: 1,
  [GGUFValueType.UINT16]: 2,
  [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4,
  [GGUFValueType.INT32]: 4,
  [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT64]: 8,
  [GGUFValueType.INT64]: 8,
  [GGUFValueType.FLOAT64]: 8,
};

function readScalar(c: Cursor, type: GGUFValueType, key: string): number | bigint | boolean {
  const size = SCALAR_SIZES[type];
  if (size === undefined)
    throw new RyzansteinError("BAD_METADATA", `key ${key}: unknown value type ${type}`, { file: c.file });
  c.need(size, `the value of ${key}`);
  const v = new DataView(c.bytes.buffer, c.bytes.byteOffset + c.pos, size);
  c.pos += size;
  switch (type) {
    case GGUFValueType.UINT8:
      return v.getUint8(0);
    case GGUFValueType.INT8:
      return v.getInt8(0);
    case GGUFValueType.UINT16:
      return v.getUint16(0, true);
    case GGUFValueType.INT16:
      return v.getInt16(0, true);
    case GGUFValueType.UINT32:
      return v.getUint32(0, true);
    case GGUFValueType.INT32:
      return v.getInt32(0, true);
    case GGUFValueType.FLOAT32:
      return v.getFloat32(0, true);
    case GGUFValueType.BOOL:
      return v.getUint8(0) !== 0;
    case GGUFValueType.UINT64:
      return v.getBigUint64(0, true);
    case GGUFValueType.INT64:
      return v.getBigInt64(0, true);
    default:
      return v.getFloat64(0, true);
  }
}

const TYPED_ARRAYS = {
  [GGUFValueType.UINT8]: Uint8Array,
  [GGUFValueType.INT8]: Int8Array,
  [GGUFValueType.UINT16]: Uint16Array,
  [GGUFValueType.INT16]: Int16Array,
  [GGUFValueType.UINT32]: Uint32Array,
  [GGUFValueType.INT32]: Int32Array,
  [GGUFValueType.FLOAT32]: Float32Array,
  [GGUFValueType.UINT64]: BigUint64Array,
  [GGUFValueType.INT64]: BigInt64Array,
  [GGUFValueType.FLOAT64]: Float64Array,
} as const;

function readValue(c: Cursor, type: GGUFValueType, key: string, depth: number): GGUFTypedValue {
  if (type === GGUFValueType.STRING) return { type, value: c.string(`the value of ${key}`) };
  if (type !== GGUFValueType.ARRAY) return { type, value: readScalar(c, type, key) as GGUFValue };
  if (depth > MAX_NESTING)
    throw new RyzansteinError("BAD_METADATA", `key ${key}: arrays nested too deep`, { file: c.file });
  const elementType = c.u32(`the element type of ${key}`) as GGUFValueType;
  if (elementType === GGUFValueType.STRING) {
    const n = c.count(`the length of array ${key}`, 8);
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = c.string(`element ${i} of ${key}`);
    return { type, elementType, value: out };
  }
  if (elementType === GGUFValueType.BOOL) {
    const n = c.count(`the length of array ${key}`, 1);
    const out = new Array<boolean>(n);
    for (let i = 0; i < n; i++) out[i] = c.u8() !== 0;
    return { type, elementType, value: out };
  }
  if (elementType === GGUFValueType.ARRAY) {
    const n = c.count(`the length of array ${key}`, 12);
    const out: GGUFValue[] = [];
    for (let i = 0; i < n; i++) out.push(readValue(c, GGUFValueType.ARRAY, key, depth + 1).value);
    return { type, elementType, value: out };
  }
  const size = SCALAR_SIZES[elementType];
  const Ctor = TYPED_ARRAYS[elementType as keyof typeof TYPED_ARRAYS];
  if (size === undefined || Ctor === undefined) {
    throw new RyzansteinError("BAD_METADATA", `key ${key}: unknown array element type ${elementType}`, {
      file: c.file,
    });
  }
  const n = c.count(`the length of array ${key}`, size);
  c.need(n * size, `array ${key}`);
  // Copy so the array is aligned and independent of the file mapping.
  const copy = new Uint8Array(n * size);
  copy.set(c.bytes.subarray(c.pos, c.pos + n * size));
  c.pos += n * size;
  return { type, elementType, value: new Ctor(copy.buffer, 0, n) as GGUFValue };
}

/**
 * Parses a GGUF v2/v3 file held in memory (read or memory-mapped). Tensor data is not copied:
 * {@link GGUFFile.tensor} returns views into `bytes`. Every length, count and offset is checked
 * against the file size, so a corrupt or truncated file fails with a `RyzansteinError`.
 */
export function parseGGUF(bytes: Uint8Array, options: ParseGGUFOptions = {}): GGUFFile {
  const file = options.file;
  const fileSize = options.fileSize ?? bytes.byteLength;
  const c = new Cursor(bytes, file);
  if (bytes.byteLength < 4 || c.u32("the magic") !== GGUF_MAGIC) {
    throw new RyzansteinError("BAD_MAGIC", "not a GGUF file (the first four bytes are not 'GGUF')", { file });
  }
  const version = c.u32("the version");
  if (version !== 2 && version !== 3) {
    const hint =
      version > 0xffff
        ? " (a big-endian file?)"
        : version === 1
          ? " (GGUF v1 is obsolete; re-convert the model)"
          : "";
    throw new RyzansteinError("UNSUPPORTED_VERSION", `unsupported GGUF version ${version}${hint}`, { file });
  }
  const tensorCount = c.count("the tensor count", 24);
  const kvCount = c.count("the metadata count", 13);

  const typedMetadata: Record<string, GGUFTypedValue> = {};
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key ${i}`);
    const type = c.u32(`the type of ${key}`) as GGUFValueType;
    if (type > GGUFValueType.FLOAT64) {
      throw new RyzansteinError("BAD_METADATA", `key ${key} has unknown value type ${type}`, { file });
    }
    if (Object.hasOwn(typedMetadata, key)) {
      throw new RyzansteinError("BAD_METADATA", `duplicate metadata key ${key}`, { file });
    }
    typedMetadata[key] = readValue(c, type, key, 0);
  }

  let alignment = DEFAULT_ALIGNMENT;
  const alignValue = typedMetadata["general.alignment"]?.value;
  if (alignValue !== undefined) {
    const a = Number(alignValue);
    if (!Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0 || a > 1 << 20) {
      throw new RyzansteinError(
        "BAD_METADATA",
        `general.alignment must be a power of two, got ${alignValue}`,
        { file },
      );
    }
    alignment = a;
  }

  const raw: Array<{ name: string; type: GGMLType; shape: number[]; rel: bigint }> = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`the name of tensor ${i}`);
    if (names.has(name)) throw new RyzansteinError("BAD_METADATA", `duplicate tensor name ${name}`, { file });
    names.add(name);
    const nDims = c.u32(`the dimension count of ${name}`);
    if (nDims === 0 || nDims > MAX_DIMS) {
      throw new RyzansteinError(
        "ABSURD_SIZE",
        `tensor ${name} has ${nDims} dimensions (1 to ${MAX_DIMS} allowed)`,
        { file },
      );
    }
    const ne: number[] = [];
    let elements = 1n;
    for (let d = 0; d < nDims; d++) {
      const dim = c.u64(`dimension ${d} of ${name}`);
      elements *= dim;
      if (dim > BigInt(Number.MAX_SAFE_INTEGER) || elements > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new RyzansteinError("ABSURD_SIZE", `tensor ${name} has an absurd dimension ${dim}`, { file });
      }
      ne.push(Number(dim));
    }
    const typeId = c.u32(`the type of ${name}`);
    if (!isKnownType(typeId)) {
      throw new RyzansteinError("UNKNOWN_TENSOR_TYPE", `tensor ${name} has unknown ggml type id ${typeId}`, {
        file,
      });
    }
    const block = TYPE_INFO[typeId].blockSize;
    if (ne[0] % block !== 0) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `tensor ${name}: row length ${ne[0]} is not a multiple of the ${TYPE_INFO[typeId].name} block size ${block}`,
        { file },
      );
    }
    const rel = c.u64(`the data offset of ${name}`);
    if (rel % BigInt(alignment) !== 0n) {
      throw new RyzansteinError(
        "BAD_METADATA",
        `tensor ${name}: data offset ${rel} is not aligned to ${alignment}`,
        { file },
      );
    }
    raw.push({ name, type: typeId, shape: ne.reverse(), rel });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const tensors: GGUFTensorInfo[] = raw.map((t) => {
    const byteLength = Tensor.byteSize(t.type, t.shape);
    const end = BigInt(dataOffset) + t.rel + BigInt(byteLength);
    if (end > BigInt(fileSize)) {
      const code = BigInt(dataOffset) + t.rel >= BigInt(fileSize) ? "OUT_OF_BOUNDS" : "TRUNCATED";
      throw new RyzansteinError(
        code,
        `tensor ${t.name} (${byteLength} bytes at data offset ${t.rel}) runs past the end of the file (${fileSize} bytes)`,
        { file },
      );
    }
    return { name: t.name, type: t.type, shape: t.shape, offset: dataOffset + Number(t.rel), byteLength };
  });
  checkOverlaps(tensors, file);
  return new GGUFFile({
    version,
    typedMetadata,
    tensors,
    alignment,
    dataOffset,
    bytes,
    file,
    read: options.read,
  });
}

function checkOverlaps(tensors: GGUFTensorInfo[], file: string | undefined): void {
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (prev.offset + prev.byteLength > sorted[i].offset) {
      throw new RyzansteinError("OUT_OF_BOUNDS", `tensors ${prev.name} and ${sorted[i].name} overlap`, {
        file,
      });
    }
  }
}

/** Reads a whole GGUF file from disk with `fs` and parses it. Prefer a memory map for large models. */
export function readGGUF(path: string): GGUFFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new RyzansteinError("IO_ERROR", `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  return parseGGUF(bytes, { file: path });
}

/**
 * Opens a GGUF file reading only its header (growing the read until the header fits); each tensor's
 * bytes are read from disk when asked for. Converting a model this way keeps one tensor in memory.
 */
export function openGGUFLazy(path: string): GGUFFile {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new RyzansteinError("IO_ERROR", `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  const read = (offset: number, length: number) => readRange(path, offset, length);
  for (let prefix = Math.min(size, 1 << 20); ; prefix = Math.min(size, prefix * 8)) {
    try {
      return parseGGUF(read(0, prefix), { file: path, fileSize: size, read });
    } catch (e) {
      // The header did not fit the prefix: read more, unless the whole file was read already.
      if (!(e instanceof RyzansteinError && e.code === "TRUNCATED") || prefix >= size) throw e;
    }
  }
}
