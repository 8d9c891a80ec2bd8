import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { KVCacheType, Model } from "./model.js";

/** Settings of {@link benchmarkModel}, named after llama-bench's. */
export interface BenchmarkOptions {
  /** Prompt tokens of the prompt-processing test `pp<N>` (0: skip it). Default 512. */
  promptTokens?: number;
  /** Generated tokens of the text-generation test `tg<N>` (0: skip it). Default 128. */
  genTokens?: number;
  /** Timed repetitions of each test (after one untimed warm-up). Default 3. */
  repetitions?: number;
  /** Tokens per forward call while processing the prompt. Default 512. */
  batchSize?: number;
  /**
   * Tokens already in the KV cache when each test starts (llama-bench's `-d`): filled once,
   * untimed; each repetition then starts from that depth. Default 0.
   */
  depth?: number;
  /** Element type of the KV cache (llama-bench's `-ctk`/`-ctv`). Default `f16`. */
  kvCache?: KVCacheType;
  /** Seed of the random token ids. Default 1. */
  seed?: number;
  /** Called before each run with a short description (for progress on stderr). */
  onProgress?: (message: string) => void;
}

/** One test's result, in the shape of llama-bench's JSON output. */
export interface BenchmarkResult {
  /** `pp512`, `tg128`, ... (`tg128 @ d4096` at a depth, as llama-bench prints it). */
  test: string;
  /** Threads the backend used. */
  threads: number;
  /** Mean of the samples, tokens per second. */
  tokens_per_second: number;
  /** Sample standard deviation of the samples (0 for one sample). */
  stddev: number;
  /** Tokens per second of each repetition. */
  samples: number[];
}

/** Mean and sample standard deviation. */
export function meanStddev(xs: readonly number[]): { mean: number; stddev: number } {
  if (xs.length === 0) return { mean: Number.NaN, stddev: Number.NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length < 2) return { mean, stddev: 0 };
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
  return { mean, stddev: Math.sqrt(v) };
}

/**
 * Measures prompt processing (`pp<N>`: N random tokens into the context, in batches) and text
 * generation (`tg<N>`: N tokens one at a time), as llama-bench does: one untimed warm-up, then
 * `repetitions` timed runs of each, every run from an empty context or from `depth` tokens already
 * in the cache. Synchronous; runs on the calling thread.
 *
 * @param model - a loaded model (its backend does the work).
 * @param threads - the backend's thread count, reported in the results.
 */
export function benchmarkModel(
  model: Model,
  threads: number,
  options: BenchmarkOptions = {},
): BenchmarkResult[] {
  const p = options.promptTokens ?? 512;
  const n = options.genTokens ?? 128;
  const reps = options.repetitions ?? 3;
  const depth = options.depth ?? 0;
  for (const [name, v, min] of [
    ["promptTokens", p, 0],
    ["genTokens", n, 0],
    ["repetitions", reps, 1],
    ["depth", depth, 0],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < min)
      throw new RyzansteinError("INVALID_ARGUMENT", `${name} must be an integer >= ${min}, got ${v}`);
  }
  const vocab = model.config.vocabSize;
  let s = (options.seed ?? 1) >>> 0 || 1;
  const token = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return 3 + (s % Math.max(1, vocab - 3)); // skip <unk>, <s>, </s>
  };
  const size = depth + Math.max(p, n, 1);
  const ctx = model.createContext(size, options.batchSize ?? 512, options.kvCache ?? "f16");
  if (depth > 0) {
    options.onProgress?.(`filling the context to depth ${depth}`);
    model.forward(ctx, Array.from({ length: depth }, token));
  }
  const at = depth > 0 ? ` @ d${depth}` : "";
  const out: BenchmarkResult[] = [];
  const run = (test: string, count: number, once: () => void): void => {
    const samples: number[] = [];
    for (let r = 0; r <= reps; r++) {
      options.onProgress?.(r === 0 ? `${test}: warm-up` : `${test}: repetition ${r}/${reps}`);
      ctx.truncate(depth);
      const t0 = performance.now();
      once();
      const seconds = (performance.now() - t0) / 1000;
      if (r > 0) samples.push(count / seconds);
    }
    const { mean, stddev } = meanStddev(samples);
    out.push({ test, threads, tokens_per_second: mean, stddev, samples });
  };
  if (p > 0) {
    const prompt = Array.from({ length: p }, token);
    run(`pp${p}${at}`, p, () => model.forward(ctx, prompt));
  }
  if (n > 0) {
    const ids = Array.from({ length: n }, token);
    const one = [0];
    run(`tg${n}${at}`, n, () => {
      for (let i = 0; i < n; i++) {
        one[0] = ids[i];
        model.forward(ctx, one);
      }
    });
  }
  return out;
}
