// The whole native surface in one place: what build/Release/ryzanstein_kernels.node exports and
// how it is found. Arguments are validated in index.ts before they cross into C++.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RyzansteinError } from "@ryzanstein/core-tensor";

/** One native engine: a thread pool plus the kernel table of one ISA. @internal */
export interface NativeEngine {
  readonly isa: string;
  readonly threads: number;
  matmul(
    y: Float32Array,
    type: number,
    w: Uint8Array,
    rows: number,
    cols: number,
    x: Float32Array,
    n: number,
  ): void;
  quantize(dst: Uint8Array, type: number, src: Float32Array, rows: number, cols: number): void;
  getRows(
    y: Float32Array,
    type: number,
    table: Uint8Array,
    rows: number,
    cols: number,
    ids: Int32Array,
  ): void;
  rmsNorm(y: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void;
  rope(
    x: Float32Array,
    n: number,
    positions: Int32Array,
    nHeads: number,
    headDim: number,
    nDims: number,
    freqBase: number,
    freqScale: number,
    neox: boolean,
  ): void;
  softmax(x: Float32Array, n: number, dim: number): void;
  argmax(ids: Int32Array, x: Float32Array, n: number, dim: number): void;
  swiglu(y: Float32Array, gate: Float32Array, up: Float32Array, len: number): void;
  add(y: Float32Array, a: Float32Array, b: Float32Array, len: number): void;
  attention(
    out: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    positions: Int32Array,
    n: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
  ): void;
  /** k and v are both F32, both F16 bits (`Uint16Array`), or both Q8_0 rows (`Uint8Array`). */
  pagedAttention(
    out: Float32Array,
    q: Float32Array,
    k: Float32Array | Uint16Array | Uint8Array,
    v: Float32Array | Uint16Array | Uint8Array,
    positions: Int32Array,
    seqOfRow: Int32Array,
    blockTables: Int32Array,
    n: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    blockSize: number,
    maxBlocksPerSeq: number,
  ): void;
  matmulPacked(
    y: Float32Array,
    type: number,
    wp: Uint8Array,
    rows: number,
    cols: number,
    x: Float32Array,
    n: number,
  ): void;
  memoryBandwidth(bytes: number, reps: number, copy: boolean): number;
  attentionF16(
    out: Float32Array,
    q: Float32Array,
    k: Uint16Array,
    v: Uint16Array,
    positions: Int32Array,
    n: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    f16Accumulate: boolean,
  ): void;
  toF16(dst: Uint16Array, dstOffset: number, src: Float32Array, len: number): void;
  /** Rows `dstRow..dstRow+rows-1` of a Q8_0 KV cache from `rows` rows of `rowSize` floats. */
  quantizeKvQ8_0(dst: Uint8Array, dstRow: number, src: Float32Array, rows: number, rowSize: number): void;
  /** Activation layout of a weight format, -1 for the float formats. */
  actLayout(type: number): number;
  actRowBytes(layout: number, cols: number): number;
  rmsNormQuantize(
    act: Uint8Array,
    layout: number,
    y: Float32Array | null,
    x: Float32Array,
    weight: Float32Array,
    n: number,
    dim: number,
    eps: number,
  ): void;
  swigluQuantize(
    act: Uint8Array,
    layout: number,
    gate: Float32Array,
    up: Float32Array,
    n: number,
    cols: number,
  ): void;
  matmulQuantized(
    y: Float32Array,
    type: number,
    w: Uint8Array,
    packed: boolean,
    rows: number,
    cols: number,
    act: Uint8Array,
    n: number,
  ): void;
  ropeStoreKV(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    n: number,
    positions: Int32Array,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    nDims: number,
    freqBase: number,
    freqScale: number,
    neox: boolean,
    keys: Float32Array | Uint16Array | Uint8Array,
    values: Float32Array | Uint16Array | Uint8Array,
    slots: Int32Array,
  ): void;
  dispose(): void;
}

/** Training kernels over a private thread pool (native/train_addon.cpp). @internal */
export interface NativeTrainEngine {
  gemm(
    c: Float32Array,
    a: Float32Array,
    aRs: number,
    aCs: number,
    b: Float32Array,
    bRs: number,
    bCs: number,
    m: number,
    n: number,
    k: number,
    accumulate: boolean,
  ): void;
  attentionForward(
    out: Float32Array,
    probs: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    batch: number,
    seq: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
  ): void;
  attentionBackward(
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    probs: Float32Array,
    dout: Float32Array,
    batch: number,
    seq: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
  ): void;
  rmsNorm(y: Float32Array, x: Float32Array, w: Float32Array, n: number, dim: number, eps: number): void;
  rmsNormBackward(
    dx: Float32Array,
    dw: Float32Array,
    dy: Float32Array,
    x: Float32Array,
    w: Float32Array,
    n: number,
    dim: number,
    eps: number,
  ): void;
  rope(
    x: Float32Array,
    n: number,
    seq: number,
    nHeads: number,
    headDim: number,
    freqBase: number,
    sign: number,
  ): void;
  swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, len: number): void;
  swigluBackward(
    dgate: Float32Array,
    dup: Float32Array,
    dout: Float32Array,
    gate: Float32Array,
    up: Float32Array,
    len: number,
  ): void;
  crossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    n: number,
    vocab: number,
    dlogits: Float32Array | null,
    scale: number,
  ): number;
  embeddingBackward(dtable: Float32Array, dy: Float32Array, ids: Int32Array, n: number, dim: number): void;
  linearFrozen(
    y: Float32Array,
    x: Float32Array,
    type: number,
    w: Uint8Array,
    packed: boolean,
    rows: number,
    cols: number,
    n: number,
  ): void;
  linearFrozenBackwardInput(
    dx: Float32Array,
    dy: Float32Array,
    type: number,
    w: Uint8Array,
    packed: boolean,
    rows: number,
    cols: number,
    n: number,
    accumulate: boolean,
  ): void;
  getRowsFrozen(
    y: Float32Array,
    type: number,
    table: Uint8Array,
    rows: number,
    cols: number,
    ids: Int32Array,
  ): void;
  dispose(): void;
}

/** The addon's exports. @internal */
export interface NativeAddon {
  NativeEngine: new (threads: number, isa: string) => NativeEngine;
  TrainEngine: new (threads: number, isa: string) => NativeTrainEngine;
  cpuIsas(): string[];
  mapFile(path: string): Uint8Array;
  repackWeights(
    type: number,
    w: Uint8Array,
    rows: number,
    cols: number,
    release: boolean,
  ): (Uint8Array & { released: boolean }) | null;
  /** Zeroed, 64-byte aligned bytes for activation buffers. */
  allocActivations(bytes: number): Uint8Array;
}

const ADDON_FILE = "ryzanstein_kernels.node";

let cached: NativeAddon | undefined;

/** Paths tried in order: the module sits in `src/` (tests) or `dist/` (builds), one level below the package root. */
function candidates(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const roots = [path.resolve(here, ".."), path.resolve(here, "../..")];
  const out: string[] = [];
  if (process.env.RYZANSTEIN_KERNELS_ADDON) out.push(process.env.RYZANSTEIN_KERNELS_ADDON);
  for (const root of roots) {
    out.push(path.join(root, "build", "Release", ADDON_FILE));
    out.push(path.join(root, "build", ADDON_FILE));
  }
  return out;
}

/** Loads (once) and returns the addon; throws a RyzansteinError naming the paths it tried. @internal */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const tried = candidates();
  for (const file of tried) {
    if (!existsSync(file)) continue;
    try {
      cached = require(file) as NativeAddon;
      return cached;
    } catch (cause) {
      throw new RyzansteinError(
        "NATIVE_ERROR",
        `cannot load the native addon ${file}: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
  }
  throw new RyzansteinError(
    "NATIVE_ERROR",
    `native addon ${ADDON_FILE} not found (run \`npm run build\` in @ryzanstein/kernels-native); tried: ${tried.join(", ")}`,
  );
}
