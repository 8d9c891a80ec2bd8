import type { ModelSource } from "@ryzanstein/convert";
import { type Backend, RyzansteinError, type Tensor } from "@ryzanstein/core-tensor";
import { type LayerWeights, Model, readLlamaWeights, readModelConfig } from "@ryzanstein/engine";
import { NativeBackend } from "@ryzanstein/kernels-native";

/**
 * Statistics of the input of one group of linear layers that read the same activations (Q/K/V
 * read the attention norm's output; gate/up the FFN norm's output).
 */
export interface InputStats {
  /** Input features (the weight matrices' column count). */
  readonly cols: number;
  /** Input rows (tokens) seen. */
  count: number;
  /** Σ x·xᵀ over every row seen, `[cols, cols]` (the GPTQ Hessian is `2/count` times this); empty when not collected. */
  readonly xtx: Float64Array;
  /** Σ |x| per channel, `[cols]` (AWQ's activation salience is this over `count`). */
  readonly absSum: Float64Array;
  /** A uniform reservoir sample of input rows, `[samples, cols]`, for AWQ's scale search. */
  readonly samples: Float32Array;
  /** Rows held in `samples`. */
  sampleCount: number;
}

/** What a calibration run collected, by input group. */
export interface CalibrationData {
  /** Stats by input-group key (see `inputGroupOf`). */
  readonly inputs: ReadonlyMap<string, InputStats>;
  /** Calibration tokens run through the model. */
  readonly tokens: number;
}

/** Options of {@link collectCalibration}. */
export interface CalibrationOptions {
  /** Tokens per forward window (default: min(model context, 256)); each window starts a fresh sequence. */
  ctx?: number;
  /** Collect `xᵀx` Hessians (GPTQ, mixed sensitivity; default true). */
  hessians?: boolean;
  /** Input rows kept per group for AWQ's scale search (default 256; bounds memory). */
  maxSamples?: number;
  /** Fewest tokens accepted (default 64); fewer throws INSUFFICIENT_DATA. */
  minTokens?: number;
  /** Native threads (default: all cores). */
  threads?: number;
  /** Leading rows of each window left out of the statistics (default 0; 1 drops the BOS row, whose outsized activations can dominate). */
  skipFirst?: number;
  /** Called after each window with the fraction done. */
  onProgress?: (fraction: number) => void;
}

/**
 * The input group a weight matrix belongs to, or undefined when nothing observes its input
 * (the token embedding is a lookup, not a product).
 */
export function inputGroupOf(name: string): string | undefined {
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name);
  if (m) {
    const part = m[2];
    if (part === "attn_q" || part === "attn_k" || part === "attn_v" || part === "attn_qkv")
      return `blk.${m[1]}.attn_in`;
    if (part === "attn_output") return `blk.${m[1]}.attn_out`;
    if (part === "ffn_gate" || part === "ffn_up") return `blk.${m[1]}.ffn_in`;
    if (part === "ffn_down") return `blk.${m[1]}.ffn_act`;
    return undefined;
  }
  return name === "output.weight" ? "output_in" : undefined;
}

/** Deterministic xorshift for the reservoir (calibration must be reproducible). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

class StatsCollector {
  readonly inputs = new Map<string, InputStats>();
  private readonly random = rng(12345);
  constructor(
    private readonly hessians: boolean,
    private readonly maxSamples: number,
  ) {}

  /** Adds `n` rows of `x` (`[n, cols]`) to the group's statistics. */
  add(group: string, x: Float32Array, n: number, cols: number): void {
    let s = this.inputs.get(group);
    if (!s) {
      s = {
        cols,
        count: 0,
        xtx: new Float64Array(this.hessians ? cols * cols : 0),
        absSum: new Float64Array(cols),
        samples: new Float32Array(this.maxSamples * cols),
        sampleCount: 0,
      };
      this.inputs.set(group, s);
    }
    for (let r = 0; r < n; r++) {
      const row = x.subarray(r * cols, (r + 1) * cols);
      for (let i = 0; i < cols; i++) s.absSum[i] += Math.abs(row[i]);
      if (this.hessians) {
        // Upper triangle only; mirrored once at the end.
        const h = s.xtx;
        for (let i = 0; i < cols; i++) {
          const xi = row[i];
          if (xi === 0) continue;
          const base = i * cols;
          for (let j = i; j < cols; j++) h[base + j] += xi * row[j];
        }
      }
      // Reservoir sampling (Vitter's algorithm R) keeps a uniform sample in bounded memory.
      const seen = s.count;
      if (s.sampleCount < this.maxSamples) {
        s.samples.set(row, s.sampleCount * cols);
        s.sampleCount++;
      } else {
        const k = Math.floor(this.random() * (seen + 1));
        if (k < this.maxSamples) s.samples.set(row, k * cols);
      }
      s.count++;
    }
  }

  finish(): void {
    for (const s of this.inputs.values()) {
      const { cols, xtx } = s;
      if (xtx.length === 0) continue;
      for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) xtx[i * cols + j] = xtx[j * cols + i];
    }
  }
}

/**
 * A backend that forwards every call to `inner` and shows each matrix product's input to
 * `observe` first: the engine's forward pass stays untouched, and the observer sees exactly the
 * activations the weights multiply.
 */
function observingBackend(inner: Backend, observe: (w: Tensor, x: Float32Array, n: number) => void): Backend {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === "matmul") {
        return (y: Float32Array, w: Tensor, x: Float32Array, n: number) => {
          observe(w, x, n);
          target.matmul(y, w, x, n);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

const LAYER_NAMES: Array<[keyof LayerWeights, string]> = [
  ["wq", "attn_q"],
  ["wk", "attn_k"],
  ["wv", "attn_v"],
  ["wo", "attn_output"],
  ["wGate", "ffn_gate"],
  ["wUp", "ffn_up"],
  ["wDown", "ffn_down"],
];

/**
 * Runs the model on calibration tokens, window by window, and collects per input group the
 * `xᵀx` sums (GPTQ's Hessians), mean |x| per channel and a bounded sample of input rows (AWQ).
 * Memory is bounded by `cols²` doubles plus `maxSamples × cols` floats per group.
 */
export function collectCalibration(
  source: ModelSource,
  tokens: readonly number[],
  options: CalibrationOptions = {},
): CalibrationData {
  const config = readModelConfig(source);
  const minTokens = options.minTokens ?? 64;
  if (tokens.length < minTokens) {
    throw new RyzansteinError(
      "INSUFFICIENT_DATA",
      `calibration text is too short: ${tokens.length} tokens, at least ${minTokens} needed`,
    );
  }
  const weights = readLlamaWeights(source, config);
  // The group of each observed matrix: only the first member of a group records (Q/K/V share an input).
  const groupOf = new Map<Tensor, string>();
  weights.layers.forEach((layer, l) => {
    for (const [field, part] of LAYER_NAMES) {
      if (part === "attn_k" || part === "attn_v" || part === "ffn_up") continue;
      const group = inputGroupOf(`blk.${l}.${part}.weight`);
      const w = layer[field] as Tensor;
      if (group && !groupOf.has(w)) groupOf.set(w, group);
    }
  });
  if (weights.output !== weights.tokenEmbd) groupOf.set(weights.output, "output_in");
  const collector = new StatsCollector(options.hessians ?? true, options.maxSamples ?? 256);
  const native = new NativeBackend({ threads: options.threads, repack: false });
  const skip = options.skipFirst ?? 0;
  const backend = observingBackend(native, (w, x, n) => {
    const group = groupOf.get(w);
    // Each window runs as one call from position 0, so its first rows are the window's first tokens.
    if (group && n > skip) collector.add(group, x.subarray(skip * w.cols), n - skip, w.cols);
  });
  try {
    // Unfused: the fused steps hand the matmuls quantized activations (matmulQuantized), which
    // the observer would never see.
    const model = new Model(config, weights, backend, { fused: false });
    const ctxLen = Math.min(options.ctx ?? 256, config.contextLength);
    const ctx = model.createContext(ctxLen, ctxLen, "f32");
    for (let start = 0; start < tokens.length; start += ctxLen) {
      const window = tokens.slice(start, start + ctxLen);
      if (window.length < 2) break;
      ctx.truncate(0);
      model.forward(ctx, window, "all"); // "all": the output matrix sees every row, not just the last
      options.onProgress?.(Math.min(1, (start + ctxLen) / tokens.length));
    }
  } finally {
    native.dispose();
  }
  collector.finish();
  return { inputs: collector.inputs, tokens: tokens.length };
}
