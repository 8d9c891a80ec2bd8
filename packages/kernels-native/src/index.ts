/**
 * `@ryzanstein/kernels-native`: the C++ `Backend` (scalar, AVX2 and AVX-512 kernels over a
 * persistent native thread pool), plus CPU feature queries and a zero-copy file mapper.
 *
 * @packageDocumentation
 */
import os from "node:os";
import {
  type ActivationBuffer,
  type AttentionParams,
  type Backend,
  GGMLType,
  geluTanh,
  isComputeFormat,
  type KVCacheArray,
  kvQ8_0RowBytes,
  type PagedAttentionParams,
  type PagedKVCacheArray,
  ReferenceBackend,
  type RopeParams,
  type RopeQK,
  RyzansteinError,
  rowBytes,
  type Tensor,
  TYPE_INFO,
  typeName,
} from "@ryzanstein/core-tensor";
import { loadAddon, type NativeEngine } from "./native.js";

/** A kernel variant: `scalar` (portable reference), `avx2` (AVX2+FMA+F16C), `avx512` (F/BW/VL/DQ/VNNI/BF16). */
export type Isa = "scalar" | "avx2" | "avx512";

/** Every variant the package knows, from least to most capable. */
export const ISAS: readonly Isa[] = Object.freeze(["scalar", "avx2", "avx512"] as const);

/** Options of {@link NativeBackend}. */
export interface NativeBackendOptions {
  /** Threads of the native pool (the calling thread counts as one). Default: the number of cores. */
  threads?: number;
  /**
   * Kernel variant to use. Default: the `RYZANSTEIN_ISA` environment variable if set, else
   * {@link bestIsa}. Asking for a variant this CPU cannot run throws `INVALID_ARGUMENT`.
   */
  isa?: Isa;
  /**
   * Repack weight matrices at load ({@link NativeBackend.prepareWeight}): Q4_0 / Q8_0 into the
   * 8-row interleaved layout the tiled kernels read, TQ1_0 / TQ2_0 into the lookup-table layout
   * (1.8125 bits per weight) of the ternary LUT kernel. Default: true, unless the environment
   * variable `RYZANSTEIN_REPACK` is `0`.
   */
  repack?: boolean;
}

/** Smallest row count for which a matrix is repacked (below it the tail handling dominates). */
const REPACK_MIN_ROWS = 64;

/** Formats with a repacked layout (Q4_0, Q8_0 interleaved; TQ1_0, TQ2_0 lookup-table). */
const REPACKED_TYPES: ReadonlySet<number> = new Set([
  GGMLType.Q4_0,
  GGMLType.Q8_0,
  GGMLType.TQ1_0,
  GGMLType.TQ2_0,
]);

/** Result of {@link NativeBackend.memoryBandwidth}. */
export interface MemoryBandwidth {
  /** Bytes read per second, all threads streaming their own slice. */
  readBytesPerSecond: number;
  /** Bytes moved (read + written) per second by a copy. */
  copyBytesPerSecond: number;
}

function isIsa(v: unknown): v is Isa {
  return typeof v === "string" && (ISAS as readonly string[]).includes(v);
}

/** Variants this CPU can run, from least to most capable; always includes `scalar`. */
export function availableIsas(): Isa[] {
  return loadAddon().cpuIsas().filter(isIsa);
}

/** The most capable variant this CPU can run. */
export function bestIsa(): Isa {
  const all = availableIsas();
  return all[all.length - 1] ?? "scalar";
}

/**
 * Maps a whole file read-only into memory and returns a zero-copy view of it. The mapping is
 * released when the returned array (and every view of its buffer) is garbage-collected.
 *
 * The pages are mapped `PROT_READ`: the array must never be written to (a write faults the process).
 * An empty file gives an empty array.
 *
 * @throws RyzansteinError `IO_ERROR` (with `file` set) when the file cannot be opened or mapped.
 */
export function mapFile(path: string): Uint8Array {
  if (typeof path !== "string" || path.length === 0) {
    throw new RyzansteinError("INVALID_ARGUMENT", "mapFile: path must be a non-empty string");
  }
  const addon = loadAddon();
  try {
    return addon.mapFile(path);
  } catch (cause) {
    throw new RyzansteinError("IO_ERROR", `mapFile failed: ${(cause as Error).message}`, {
      cause,
      file: path,
    });
  }
}

// ---- argument checks (all before crossing into C++) ----

function fail(code: "INVALID_ARGUMENT" | "SHAPE_MISMATCH" | "OUT_OF_BOUNDS", op: string, msg: string): never {
  throw new RyzansteinError(code, `${op}: ${msg}`);
}

function int(op: string, name: string, v: unknown, min = 0): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    fail("INVALID_ARGUMENT", op, `${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

function finite(op: string, name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v))
    fail("INVALID_ARGUMENT", op, `${name} must be a finite number`);
  return v;
}

function f32(op: string, name: string, a: unknown, need: number): Float32Array {
  if (!(a instanceof Float32Array)) fail("INVALID_ARGUMENT", op, `${name} must be a Float32Array`);
  if (a.length < need) fail("SHAPE_MISMATCH", op, `${name} has ${a.length} elements, ${need} needed`);
  return a;
}

function i32(op: string, name: string, a: unknown, need: number): Int32Array {
  if (!(a instanceof Int32Array)) fail("INVALID_ARGUMENT", op, `${name} must be an Int32Array`);
  if (a.length < need) fail("SHAPE_MISMATCH", op, `${name} has ${a.length} elements, ${need} needed`);
  return a;
}

/** True when the byte ranges of two views of the same buffer intersect. */
function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return (
    a.buffer === b.buffer &&
    a.byteOffset < b.byteOffset + b.byteLength &&
    b.byteOffset < a.byteOffset + a.byteLength
  );
}

interface Matrix {
  type: number;
  rows: number;
  cols: number;
  data: Uint8Array;
}

function matrix(op: string, t: Tensor): Matrix {
  if (t === null || typeof t !== "object" || !(t.data instanceof Uint8Array) || !Array.isArray(t.shape)) {
    fail("INVALID_ARGUMENT", op, "weights must be a Tensor");
  }
  if (!isComputeFormat(t.type)) {
    throw new RyzansteinError(
      "UNSUPPORTED_TENSOR_TYPE",
      `${op}: ${typeName(t.type)} tensors are not supported`,
    );
  }
  const shape = t.shape;
  if (shape.length === 0 || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    fail("SHAPE_MISMATCH", op, `invalid tensor shape [${shape.join(", ")}]`);
  }
  const cols = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  if (t.type === GGMLType.Q8_1 || t.type === GGMLType.Q8_K) {
    // Activation-only formats: ggml has no weight kernels for them either.
    throw new RyzansteinError(
      "UNSUPPORTED_TENSOR_TYPE",
      `${op}: ${typeName(t.type)} is an activation format, not a weight format`,
    );
  }
  const block = TYPE_INFO[t.type].blockSize;
  if (cols % block !== 0) {
    fail(
      "SHAPE_MISMATCH",
      op,
      `row length ${cols} is not a multiple of the ${typeName(t.type)} block size ${block}`,
    );
  }
  const need = rowBytes(t.type, cols) * rows;
  if (t.data.byteLength < need) {
    fail(
      "SHAPE_MISMATCH",
      op,
      `tensor data has ${t.data.byteLength} bytes, ${typeName(t.type)}[${shape}] needs ${need}`,
    );
  }
  return { type: t.type, rows, cols, data: t.data };
}

function nativeError(op: string, cause: unknown): RyzansteinError {
  if (cause instanceof RyzansteinError) return cause;
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new RyzansteinError("NATIVE_ERROR", `${op}: ${msg}`, { cause });
}

/** The element type of a pair of K/V cache buffers (both of one kind, or INVALID_ARGUMENT). */
function cacheKind(op: string, k: unknown, v: unknown): "f32" | "f16" | "q8_0" {
  if (k instanceof Float32Array && v instanceof Float32Array) return "f32";
  if (k instanceof Uint16Array && v instanceof Uint16Array) return "f16";
  if (k instanceof Uint8Array && v instanceof Uint8Array) return "q8_0";
  return fail(
    "INVALID_ARGUMENT",
    op,
    "k and v must both be Float32Array, both Uint16Array (F16) or both Uint8Array (Q8_0 rows)",
  );
}

/** Array elements per cache row of `rowSize` values (bytes for Q8_0, whose rows need 32 | rowSize). */
function kvCacheRowUnits(op: string, kind: "f32" | "f16" | "q8_0", rowSize: number): number {
  if (kind !== "q8_0") return rowSize;
  if (rowSize % 32 !== 0)
    fail(
      "INVALID_ARGUMENT",
      op,
      `a Q8_0 KV cache needs nKvHeads*headDim to be a multiple of 32, got ${rowSize}`,
    );
  return kvQ8_0RowBytes(rowSize);
}

function defaultThreads(): number {
  return typeof os.availableParallelism === "function"
    ? os.availableParallelism()
    : Math.max(1, os.cpus().length);
}

/** Checks what contiguous and paged attention share: the params, q/out sizes and positions. */
function checkAttention(
  op: string,
  out: Float32Array,
  q: Float32Array,
  positions: Int32Array,
  n: number,
  params: AttentionParams,
): { nHeads: number; nKvHeads: number; headDim: number; scale: number } {
  if (params === null || typeof params !== "object") fail("INVALID_ARGUMENT", op, "params must be an object");
  int(op, "n", n);
  const nHeads = int(op, "nHeads", params.nHeads, 1);
  const nKvHeads = int(op, "nKvHeads", params.nKvHeads, 1);
  const headDim = int(op, "headDim", params.headDim, 1);
  const scale = finite(op, "scale", params.scale);
  if (nHeads % nKvHeads !== 0) {
    fail("INVALID_ARGUMENT", op, `nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
  }
  f32(op, "q", q, n * nHeads * headDim);
  f32(op, "out", out, n * nHeads * headDim);
  i32(op, "positions", positions, n);
  return { nHeads, nKvHeads, headDim, scale };
}

/**
 * The native `Backend`: every op runs synchronously in C++ on a persistent thread pool, with
 * kernels chosen for this CPU (or forced with `isa` / `RYZANSTEIN_ISA`). Results match
 * `ReferenceBackend` up to float summation order; activations are converted to each weight
 * format's `vecDotType` exactly as ggml does.
 *
 * Use one instance per thread (it may be created inside a worker thread); call {@link dispose}
 * to stop its threads early, otherwise they stop when it is garbage-collected.
 */
export class NativeBackend implements Backend {
  /** `native-<isa>`, e.g. `native-avx2`. */
  readonly name: string;
  /** The kernel variant in use. */
  readonly isa: Isa;
  /** Threads of the native pool. */
  readonly threads: number;
  /** Whether {@link prepareWeight} repacks. */
  readonly repack: boolean;
  #engine: NativeEngine | undefined;
  /** Repacked copies made by {@link prepareWeight}, by tensor. */
  #packed = new WeakMap<Tensor, Uint8Array>();
  /** Bytes of repacked copies made so far (and of source pages released). */
  #packedBytes = { made: 0, released: 0 };

  /**
   * @throws RyzansteinError `INVALID_ARGUMENT` for a bad thread count, an unknown ISA or one this CPU lacks.
   */
  constructor(options: NativeBackendOptions = {}) {
    const threads = options.threads ?? defaultThreads();
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 1024) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `threads must be an integer in [1, 1024], got ${String(threads)}`,
      );
    }
    const env = process.env.RYZANSTEIN_ISA;
    const requested: unknown = options.isa ?? (env ? env.trim().toLowerCase() : undefined);
    const source = options.isa !== undefined ? "isa option" : "RYZANSTEIN_ISA";
    const available = availableIsas();
    let isa: Isa;
    if (requested === undefined) {
      isa = available[available.length - 1] ?? "scalar";
    } else if (!isIsa(requested)) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `unknown ISA ${JSON.stringify(requested)} (${source}); expected one of ${ISAS.join(", ")}`,
      );
    } else if (!available.includes(requested)) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `ISA ${requested} (${source}) is not supported by this CPU; available: ${available.join(", ")}`,
      );
    } else {
      isa = requested;
    }
    const addon = loadAddon();
    try {
      this.#engine = new addon.NativeEngine(threads, isa);
    } catch (cause) {
      throw nativeError("NativeBackend", cause);
    }
    this.isa = isa;
    this.threads = threads;
    this.name = `native-${isa}`;
    this.repack = options.repack ?? process.env.RYZANSTEIN_REPACK !== "0";
  }

  /**
   * Makes the repacked copy of a matrix with at least 64 rows (when {@link repack} is on): the
   * 8-row interleaved layout of a Q4_0 / Q8_0 matrix, or the lookup-table layout of a TQ1_0 /
   * TQ2_0 matrix (a TQ2_0 matrix holding the code for +2, which ternary weights never use, stays
   * in the file layout). Later {@link matmul} calls with the same `Tensor` object read the copy
   * instead of `w.data`. With `release`, the pages of `w.data` are dropped from memory when it lies
   * in a {@link mapFile} mapping, so the copy replaces them in RSS rather than sitting beside them.
   * Returns true when a copy was made. Other tensors are left alone.
   */
  prepareWeight(w: Tensor, release: boolean): boolean {
    const op = "prepareWeight";
    this.#e(op);
    const m = matrix(op, w);
    if (!this.repack || !REPACKED_TYPES.has(m.type) || m.rows < REPACK_MIN_ROWS) return false;
    if (this.#packed.has(w)) return true;
    try {
      const packed = loadAddon().repackWeights(m.type, m.data, m.rows, m.cols, release);
      if (packed === null) return false;
      this.#packed.set(w, packed);
      this.#packedBytes.made += packed.byteLength;
      if (packed.released) this.#packedBytes.released += packed.byteLength;
      return true;
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** Bytes of repacked weight copies made by {@link prepareWeight}, and of those whose source pages were released. */
  get repackedBytes(): { made: number; released: number } {
    return { ...this.#packedBytes };
  }

  /**
   * Measures memory bandwidth with this backend's threads over a `bytes` buffer (default 256 MiB):
   * the best of `reps` passes (default 5) of a read and of a copy.
   */
  memoryBandwidth(bytes = 256 * 1024 * 1024, reps = 5): MemoryBandwidth {
    const op = "memoryBandwidth";
    const e = this.#e(op);
    int(op, "bytes", bytes, 1);
    int(op, "reps", reps, 1);
    try {
      return {
        readBytesPerSecond: e.memoryBandwidth(bytes, reps, false),
        copyBytesPerSecond: e.memoryBandwidth(bytes, reps, true),
      };
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  #e(op: string): NativeEngine {
    if (!this.#engine)
      throw new RyzansteinError("INVALID_ARGUMENT", `${op}: NativeBackend has been disposed`);
    return this.#engine;
  }

  /**
   * `y[n, w.rows] = x[n, w.cols] · wᵀ` for F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q2_K..Q6_K, TQ1_0
   * and TQ2_0 weights (activations quantized to the format's `vecDotType` as ggml does). `y` must
   * not overlap `x`.
   */
  matmul(y: Float32Array, w: Tensor, x: Float32Array, n: number): void {
    const op = "matmul";
    const e = this.#e(op);
    const m = matrix(op, w);
    int(op, "n", n);
    f32(op, "x", x, n * m.cols);
    f32(op, "y", y, n * m.rows);
    if (overlaps(y, x) || overlaps(y, m.data))
      fail("INVALID_ARGUMENT", op, "y must not overlap x or the weights");
    const packed = this.#packed.get(w);
    try {
      if (packed) e.matmulPacked(y, m.type, packed, m.rows, m.cols, x, n);
      else e.matmul(y, m.type, m.data, m.rows, m.cols, x, n);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /**
   * Quantizes `rows` rows of `cols` floats to `type` with ggml's reference rounding (the bytes equal
   * core-tensor's `quantizeRow`), rows split across the pool. Returns `undefined` for formats without
   * a native quantizer (only Q4_K and Q6_K have one; their TypeScript ports are the slow ones).
   */
  quantize(type: GGMLType, values: Float32Array, rows: number, cols: number): Uint8Array | undefined {
    const op = "quantize";
    const e = this.#e(op);
    if (type !== GGMLType.Q4_K && type !== GGMLType.Q6_K) return undefined;
    if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols % 256 !== 0) {
      fail("SHAPE_MISMATCH", op, `rows must be >= 0 and cols a multiple of 256, got [${rows}, ${cols}]`);
    }
    f32(op, "values", values, rows * cols);
    const out = new Uint8Array(rowBytes(type, cols) * rows);
    try {
      e.quantize(out, type, values, rows, cols);
    } catch (cause) {
      throw nativeError(op, cause);
    }
    return out;
  }

  /** `y[i, :] = table[ids[i], :]` decoded to floats. Ids outside the table throw `OUT_OF_BOUNDS`. */
  getRows(y: Float32Array, table: Tensor, ids: Int32Array): void {
    const op = "getRows";
    const e = this.#e(op);
    const m = matrix(op, table);
    i32(op, "ids", ids, 0);
    f32(op, "y", y, ids.length * m.cols);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id < 0 || id >= m.rows)
        fail("OUT_OF_BOUNDS", op, `row id ${id} at index ${i} out of range [0, ${m.rows})`);
    }
    try {
      e.getRows(y, m.type, m.data, m.rows, m.cols, ids);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** `y[n, dim] = x / sqrt(mean(x²) + eps) * weight` per row; `y` may alias `x`. */
  rmsNorm(y: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void {
    const op = "rmsNorm";
    const e = this.#e(op);
    int(op, "n", n);
    int(op, "dim", dim);
    if (finite(op, "eps", eps) < 0) fail("INVALID_ARGUMENT", op, "eps must be >= 0");
    f32(op, "x", x, n * dim);
    f32(op, "y", y, n * dim);
    f32(op, "weight", weight, dim);
    try {
      e.rmsNorm(y, x, weight, n, dim, eps);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** Rotates `x[n, nHeads*headDim]` in place (normal or NeoX layout); row `i` is at `positions[i]`. */
  rope(x: Float32Array, n: number, positions: Int32Array, params: RopeParams): void {
    const op = "rope";
    const e = this.#e(op);
    if (params === null || typeof params !== "object")
      fail("INVALID_ARGUMENT", op, "params must be an object");
    int(op, "n", n);
    const nHeads = int(op, "nHeads", params.nHeads, 1);
    const headDim = int(op, "headDim", params.headDim, 1);
    const nDims = int(op, "nDims", params.nDims, 2);
    if (nDims % 2 !== 0 || nDims > headDim)
      fail("INVALID_ARGUMENT", op, `nDims ${nDims} must be even and <= headDim ${headDim}`);
    if (!(finite(op, "freqBase", params.freqBase) > 0)) fail("INVALID_ARGUMENT", op, "freqBase must be > 0");
    finite(op, "freqScale", params.freqScale);
    f32(op, "x", x, n * nHeads * headDim);
    i32(op, "positions", positions, n);
    if (params.freqFactors || params.yarn) {
      // Llama 3.1 frequency factors and YaRN run on the reference path until the kernel takes them.
      this.#fallback ??= new ReferenceBackend();
      this.#fallback.rope(x, n, positions, params);
      return;
    }
    try {
      e.rope(
        x,
        n,
        positions,
        nHeads,
        headDim,
        nDims,
        params.freqBase,
        params.freqScale,
        Boolean(params.neox),
      );
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** Softmax of each row of `x[n, dim]`, in place (max-subtracted, stable). */
  softmax(x: Float32Array, n: number, dim: number): void {
    const op = "softmax";
    const e = this.#e(op);
    int(op, "n", n);
    int(op, "dim", dim);
    f32(op, "x", x, n * dim);
    try {
      e.softmax(x, n, dim);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /**
   * `ids[t]` = index of the largest value of row `t` of `x[n, dim]`: the first of equal maxima, NaN
   * never chosen, 0 when no value exceeds -Infinity (greedy sampling over logits).
   */
  argmax(ids: Int32Array, x: Float32Array, n: number, dim: number): void {
    const op = "argmax";
    const e = this.#e(op);
    int(op, "n", n);
    int(op, "dim", dim);
    if (!(ids instanceof Int32Array) || ids.length < n)
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `${op}: ids must be an Int32Array of at least ${n} elements`,
      );
    f32(op, "x", x, n * dim);
    try {
      e.argmax(ids, x, n, dim);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** `y[i] = silu(gate[i]) * up[i]` for `len` elements; `y` may alias either input. */
  /** GeGLU. Runs in TypeScript for now (it is a small share of a Gemma step); the C++ kernel is a follow-up. */
  geglu(y: Float32Array, gate: Float32Array, up: Float32Array, len: number): void {
    const op = "geglu";
    int(op, "len", len);
    f32(op, "y", y, len);
    f32(op, "gate", gate, len);
    f32(op, "up", up, len);
    for (let i = 0; i < len; i++) y[i] = geluTanh(gate[i]) * up[i];
  }

  swiglu(y: Float32Array, gate: Float32Array, up: Float32Array, len: number): void {
    const op = "swiglu";
    const e = this.#e(op);
    int(op, "len", len);
    f32(op, "y", y, len);
    f32(op, "gate", gate, len);
    f32(op, "up", up, len);
    try {
      e.swiglu(y, gate, up, len);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** `dst[dstOffset + i] = f16(src[i])` for `len` values (round to nearest even), e.g. F16 KV cache writes. */
  toF16(dst: Uint16Array, dstOffset: number, src: Float32Array, len: number): void {
    const op = "toF16";
    const e = this.#e(op);
    if (!(dst instanceof Uint16Array)) fail("INVALID_ARGUMENT", op, "dst must be a Uint16Array");
    int(op, "dstOffset", dstOffset);
    int(op, "len", len);
    f32(op, "src", src, len);
    if (dst.length < dstOffset + len)
      fail("SHAPE_MISMATCH", op, `dst has ${dst.length} elements, ${dstOffset + len} needed`);
    try {
      e.toF16(dst, dstOffset, src, len);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /**
   * Rows `dstRow..dstRow+rows-1` of a Q8_0 KV cache (`kvQ8_0RowBytes(rowSize)` bytes each) from
   * `rows` rows of `rowSize` floats: llama.cpp's Q8_0 rounding (bit for bit `quantizeKvRowsQ8_0`).
   */
  quantizeKvQ8_0(dst: Uint8Array, dstRow: number, src: Float32Array, rows: number, rowSize: number): void {
    const op = "quantizeKvQ8_0";
    const e = this.#e(op);
    if (!(dst instanceof Uint8Array)) fail("INVALID_ARGUMENT", op, "dst must be a Uint8Array");
    int(op, "dstRow", dstRow);
    int(op, "rows", rows);
    const rowBytes = kvCacheRowUnits(op, "q8_0", int(op, "rowSize", rowSize, 1));
    f32(op, "src", src, rows * rowSize);
    if (dst.length < (dstRow + rows) * rowBytes)
      fail("SHAPE_MISMATCH", op, `dst has ${dst.length} bytes, ${(dstRow + rows) * rowBytes} needed`);
    try {
      e.quantizeKvQ8_0(dst, dstRow, src, rows, rowSize);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** `y[i] = a[i] + b[i]` for `len` elements; `y` may alias either input. */
  add(y: Float32Array, a: Float32Array, b: Float32Array, len: number): void {
    const op = "add";
    const e = this.#e(op);
    int(op, "len", len);
    f32(op, "y", y, len);
    f32(op, "a", a, len);
    f32(op, "b", b, len);
    try {
      e.add(y, a, b, len);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /**
   * Causal grouped-query attention of `q[n, nHeads*headDim]` over the cache
   * `k, v[ctx, nKvHeads*headDim]`: row `i` attends cache rows `0..positions[i]`. An F32 cache is
   * split across threads by (token, head); an F16 cache (`Uint16Array`, half bits) by (token, KV
   * head), each task running all query heads of the group over tiles of 32 keys with an online
   * softmax. Positions beyond the cache throw `OUT_OF_BOUNDS`.
   */
  attention(
    out: Float32Array,
    q: Float32Array,
    k: KVCacheArray,
    v: KVCacheArray,
    positions: Int32Array,
    n: number,
    params: AttentionParams,
  ): void {
    const op = "attention";
    const e = this.#e(op);
    const { nHeads, nKvHeads, headDim, scale } = checkAttention(op, out, q, positions, n, params);
    const kvRow = nKvHeads * headDim;
    const f16 = k instanceof Uint16Array;
    if (f16 ? !(v instanceof Uint16Array) : !(k instanceof Float32Array && v instanceof Float32Array)) {
      fail("INVALID_ARGUMENT", op, "k and v must both be Float32Array or both Uint16Array (F16)");
    }
    const ctx = Math.floor(Math.min(k.length, v.length) / kvRow);
    for (let i = 0; i < n; i++) {
      const p = positions[i];
      if (p < 0 || p >= ctx)
        fail("OUT_OF_BOUNDS", op, `position ${p} of row ${i} is outside the KV cache of ${ctx} rows`);
    }
    if (params.softcap) {
      // Soft-capped scores (Gemma 2) run on the reference path until the kernel takes the cap.
      this.#fallback ??= new ReferenceBackend();
      this.#fallback.attention(out, q, k, v, positions, n, params);
      return;
    }
    try {
      if (f16)
        e.attentionF16(
          out,
          q,
          k,
          v as Uint16Array,
          positions,
          n,
          nHeads,
          nKvHeads,
          headDim,
          scale,
          params.f16Accumulate === true,
        );
      else
        e.attention(
          out,
          q,
          k as Float32Array,
          v as Float32Array,
          positions,
          n,
          nHeads,
          nKvHeads,
          headDim,
          scale,
        );
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  #fallback: ReferenceBackend | undefined;
  /**
   * Causal grouped-query attention over a paged KV cache (see `Backend.pagedAttention`). Every
   * block index a row reaches is checked against the cache before the call crosses into C++;
   * work is split across threads by (run of one sequence's rows, KV head). The cache is F32, F16
   * (`Uint16Array` of half bits, read with the kernel of the contiguous F16 attention) or Q8_0
   * (`Uint8Array` rows, dequantized in registers by the same kernel structure).
   */
  pagedAttention(
    out: Float32Array,
    q: Float32Array,
    k: PagedKVCacheArray,
    v: PagedKVCacheArray,
    positions: Int32Array,
    seqOfRow: Int32Array,
    blockTables: Int32Array,
    n: number,
    params: PagedAttentionParams,
  ): void {
    const op = "pagedAttention";
    const e = this.#e(op);
    const { nHeads, nKvHeads, headDim, scale } = checkAttention(op, out, q, positions, n, params);
    const blockSize = int(op, "blockSize", params.blockSize, 1);
    const maxBlocks = int(op, "maxBlocksPerSeq", params.maxBlocksPerSeq, 1);
    i32(op, "seqOfRow", seqOfRow, n);
    i32(op, "blockTables", blockTables, 0);
    const rowUnits = kvCacheRowUnits(op, cacheKind(op, k, v), nKvHeads * headDim);
    const nBlocks = Math.floor(Math.min(k.length, v.length) / rowUnits / blockSize);
    for (let i = 0; i < n; i++) {
      const p = positions[i];
      const s = seqOfRow[i];
      const used = Math.floor(p / blockSize) + 1;
      if (p < 0 || s < 0 || used > maxBlocks || (s + 1) * maxBlocks > blockTables.length)
        fail("OUT_OF_BOUNDS", op, `row ${i} (sequence ${s}, position ${p}) is outside the block tables`);
      for (let b = 0; b < used; b++) {
        const blk = blockTables[s * maxBlocks + b];
        if (blk < 0 || blk >= nBlocks)
          fail(
            "OUT_OF_BOUNDS",
            op,
            `block ${blk} of sequence ${s} is outside the cache of ${nBlocks} blocks`,
          );
      }
    }
    try {
      e.pagedAttention(
        out,
        q,
        k,
        v,
        positions,
        seqOfRow,
        blockTables,
        n,
        nHeads,
        nKvHeads,
        headDim,
        scale,
        blockSize,
        maxBlocks,
      );
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  // ---- fused steps: bit-identical to the unfused ops they replace (native/fused.cpp) ----

  /**
   * The activation layout a {@link matmul} with `w` converts to (Q8 for Q4_0 / Q8_0 / Q5_0 / Q4_1,
   * Q8_K for the K-quants and ternary formats), or `-1` for F32 / F16 / BF16 weights, whose
   * activations are not quantized, and for TQ1_0 / TQ2_0 weights repacked for the lookup-table
   * kernel, which builds its tables from float activations: both stay on the unfused path.
   */
  activationLayout(w: Tensor): number {
    const op = "activationLayout";
    const e = this.#e(op);
    const m = matrix(op, w);
    // The ternary lookup-table kernel builds its tables from float activations.
    if (this.#packed.has(w) && (m.type === GGMLType.TQ1_0 || m.type === GGMLType.TQ2_0)) return -1;
    return e.actLayout(m.type);
  }

  /**
   * A zeroed, 64-byte aligned buffer for `rows` rows of `cols` activations in `layout` (from
   * {@link activationLayout}), made once per context and reused by every step.
   */
  createActivations(layout: number, cols: number, rows: number): ActivationBuffer {
    const op = "createActivations";
    const e = this.#e(op);
    int(op, "layout", layout);
    int(op, "cols", cols);
    int(op, "rows", rows);
    let rowBytes: number;
    try {
      rowBytes = e.actRowBytes(layout, cols);
    } catch (cause) {
      throw nativeError(op, cause);
    }
    return Object.freeze({ layout, cols, rows, data: loadAddon().allocActivations(rowBytes * rows) });
  }

  /** Checks an activation buffer against the `n` rows an op will touch. */
  #act(op: string, act: ActivationBuffer, n: number): void {
    if (act === null || typeof act !== "object" || !(act.data instanceof Uint8Array))
      fail("INVALID_ARGUMENT", op, "act must be an ActivationBuffer from createActivations");
    int(op, "act.layout", act.layout);
    int(op, "act.cols", act.cols);
    if (n > act.rows) fail("SHAPE_MISMATCH", op, `${n} rows do not fit the ${act.rows} rows of act`);
  }

  /**
   * `act[n, dim] = convert(rmsNorm(x) · weight)`: {@link rmsNorm} and the activation conversion of
   * the matmuls that read it, in one pass (the float rows go to `y` only when it is given). The
   * bytes equal those the unfused {@link rmsNorm} + {@link matmul} would convert to.
   */
  rmsNormQuantize(
    act: ActivationBuffer,
    x: Float32Array,
    weight: Float32Array,
    n: number,
    dim: number,
    eps: number,
    y?: Float32Array,
  ): void {
    const op = "rmsNormQuantize";
    const e = this.#e(op);
    int(op, "n", n);
    int(op, "dim", dim);
    this.#act(op, act, n);
    if (act.cols !== dim) fail("SHAPE_MISMATCH", op, `act rows have ${act.cols} values, dim is ${dim}`);
    if (finite(op, "eps", eps) < 0) fail("INVALID_ARGUMENT", op, "eps must be >= 0");
    f32(op, "x", x, n * dim);
    f32(op, "weight", weight, dim);
    if (y !== undefined) f32(op, "y", y, n * dim);
    try {
      e.rmsNormQuantize(act.data, act.layout, y ?? null, x, weight, n, dim, eps);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** `act[n, act.cols] = convert(silu(gate) · up)`: {@link swiglu} and the conversion in one pass. */
  swigluQuantize(act: ActivationBuffer, gate: Float32Array, up: Float32Array, n: number): void {
    const op = "swigluQuantize";
    const e = this.#e(op);
    int(op, "n", n);
    this.#act(op, act, n);
    f32(op, "gate", gate, n * act.cols);
    f32(op, "up", up, n * act.cols);
    try {
      e.swigluQuantize(act.data, act.layout, gate, up, n, act.cols);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** {@link matmul} over `n` rows of activations already in `activationLayout(w)` (repacked weights included). */
  matmulQuantized(y: Float32Array, w: Tensor, act: ActivationBuffer, n: number): void {
    const op = "matmulQuantized";
    const e = this.#e(op);
    const m = matrix(op, w);
    int(op, "n", n);
    this.#act(op, act, n);
    const layout = e.actLayout(m.type);
    if (layout < 0)
      fail("INVALID_ARGUMENT", op, `${typeName(m.type)} weights take float activations, not converted ones`);
    if (act.layout !== layout || act.cols !== m.cols)
      fail(
        "SHAPE_MISMATCH",
        op,
        `act (layout ${act.layout}, ${act.cols} columns) does not fit ${typeName(m.type)}[${m.rows}, ${m.cols}] (layout ${layout})`,
      );
    f32(op, "y", y, n * m.rows);
    if (overlaps(y, m.data)) fail("INVALID_ARGUMENT", op, "y must not overlap the weights");
    // A ternary lookup-table copy cannot take converted activations: read the file bytes instead
    // (correct, and pages released at load fault back in; activationLayout steers callers away).
    const lut = m.type === GGMLType.TQ1_0 || m.type === GGMLType.TQ2_0;
    const packed = lut ? undefined : this.#packed.get(w);
    try {
      e.matmulQuantized(y, m.type, packed ?? m.data, packed !== undefined, m.rows, m.cols, act.data, n);
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /**
   * {@link NativeBackend.rope} of `q` and `k` in place, then row `i` of `k` and `v` stored at cache row
   * `slots[i]` of `keys` / `values` (F16 bits in `Uint16Array`s, Q8_0 rows in `Uint8Array`s as
   * {@link NativeBackend.quantizeKvQ8_0} writes them, or F32), in one pass over the tokens. Llama
   * 3.1 frequency factors and YaRN take the unfused path (they run on the reference).
   */
  ropeStoreKV(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    n: number,
    positions: Int32Array,
    rope: RopeQK,
    keys: PagedKVCacheArray,
    values: PagedKVCacheArray,
    slots: Int32Array,
  ): void {
    const op = "ropeStoreKV";
    const e = this.#e(op);
    if (rope === null || typeof rope !== "object") fail("INVALID_ARGUMENT", op, "rope must be an object");
    const { q: rq, k: rk } = rope;
    if (rq === null || typeof rq !== "object" || rk === null || typeof rk !== "object")
      fail("INVALID_ARGUMENT", op, "rope.q and rope.k must be RopeParams");
    int(op, "n", n);
    const nHeads = int(op, "nHeads", rq.nHeads, 1);
    const nKvHeads = int(op, "nKvHeads", rk.nHeads, 1);
    const headDim = int(op, "headDim", rq.headDim, 1);
    const nDims = int(op, "nDims", rq.nDims, 2);
    if (nDims % 2 !== 0 || nDims > headDim)
      fail("INVALID_ARGUMENT", op, `nDims ${nDims} must be even and <= headDim ${headDim}`);
    if (!(finite(op, "freqBase", rq.freqBase) > 0)) fail("INVALID_ARGUMENT", op, "freqBase must be > 0");
    finite(op, "freqScale", rq.freqScale);
    const kvRow = nKvHeads * headDim;
    f32(op, "q", q, n * nHeads * headDim);
    f32(op, "k", k, n * kvRow);
    f32(op, "v", v, n * kvRow);
    i32(op, "positions", positions, n);
    i32(op, "slots", slots, n);
    const kind = cacheKind(op, keys, values);
    const cacheRows = Math.floor(Math.min(keys.length, values.length) / kvCacheRowUnits(op, kind, kvRow));
    for (let i = 0; i < n; i++) {
      const s = slots[i];
      if (s < 0 || s >= cacheRows)
        fail("OUT_OF_BOUNDS", op, `slot ${s} of row ${i} is outside the KV cache of ${cacheRows} rows`);
    }
    const same =
      rk.headDim === headDim &&
      rk.nDims === nDims &&
      rk.freqBase === rq.freqBase &&
      rk.freqScale === rq.freqScale &&
      Boolean(rk.neox) === Boolean(rq.neox);
    if (!same || rq.freqFactors || rq.yarn || rk.freqFactors || rk.yarn) {
      // Settings the fused kernel does not take: the unfused ops, same results.
      this.rope(q, n, positions, rq);
      this.rope(k, n, positions, rk);
      for (let i = 0; i < n; i++) {
        const src = k.subarray(i * kvRow, (i + 1) * kvRow);
        const vsrc = v.subarray(i * kvRow, (i + 1) * kvRow);
        if (keys instanceof Uint8Array) {
          this.quantizeKvQ8_0(keys, slots[i], src, 1, kvRow);
          this.quantizeKvQ8_0(values as Uint8Array, slots[i], vsrc, 1, kvRow);
        } else if (keys instanceof Uint16Array) {
          this.toF16(keys, slots[i] * kvRow, src, kvRow);
          this.toF16(values as Uint16Array, slots[i] * kvRow, vsrc, kvRow);
        } else {
          keys.set(src, slots[i] * kvRow);
          (values as Float32Array).set(vsrc, slots[i] * kvRow);
        }
      }
      return;
    }
    try {
      e.ropeStoreKV(
        q,
        k,
        v,
        n,
        positions,
        nHeads,
        nKvHeads,
        headDim,
        nDims,
        rq.freqBase,
        rq.freqScale,
        Boolean(rq.neox),
        keys,
        values,
        slots,
      );
    } catch (cause) {
      throw nativeError(op, cause);
    }
  }

  /** Stops the native threads and frees scratch memory. The backend must not be used afterwards. */
  dispose(): void {
    const e = this.#engine;
    this.#engine = undefined;
    e?.dispose();
  }
}

export {
  type FrozenWeight,
  NativeTrainKernels,
  type NativeTrainKernelsOptions,
  type TrainAttentionShape,
} from "./train.js";
