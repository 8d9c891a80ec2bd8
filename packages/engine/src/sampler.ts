import { argmaxRow, RyzansteinError } from "@ryzanstein/core-tensor";

/** Sampling settings, with llama.cpp's meanings. */
export interface SamplingOptions {
  /** Softmax temperature; `0` (or less) picks the most likely token (greedy). Default 0.8. */
  temperature?: number;
  /** Keep only the `topK` most likely tokens; 0 disables. Default 40. */
  topK?: number;
  /** Keep the smallest set of tokens whose probability sum reaches `topP`; 1 disables. Default 0.95. */
  topP?: number;
  /** Drop tokens less likely than `minP` × the most likely one; 0 disables. Default 0.05. */
  minP?: number;
  /** Divide positive logits (multiply negative ones) of recently seen tokens by this; 1 disables. Default 1. */
  repeatPenalty?: number;
  /** How many recent tokens the penalties look at; -1 means the whole context. Default 64. */
  repeatLastN?: number;
  /** Subtract `count × frequencyPenalty` from a seen token's logit. Default 0. */
  frequencyPenalty?: number;
  /** Subtract `presencePenalty` from the logit of any seen token. Default 0. */
  presencePenalty?: number;
  /** Seed of the random generator; the same seed gives the same tokens. Default: random. */
  seed?: number;
}

/** A token with its natural-log probability. */
export interface TokenLogprob {
  /** Token id. */
  token: number;
  /** ln p(token) under the model's distribution at temperature 1. */
  logprob: number;
}

/** xoshiro128** — small, fast, seedable. */
class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    // splitmix32 to spread the seed across the state
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Chooses the next token from logits: penalties, then top-k, top-p, min-p, temperature, and a
 * seeded draw (llama.cpp's default order). Scratch arrays are allocated once per vocabulary size.
 */
export class Sampler {
  /** The settings in force, defaults filled in. */
  readonly options: Required<SamplingOptions>;
  private readonly rng: Rng;
  private readonly history: number[] = [];
  private ids = new Int32Array(0);
  private probs = new Float64Array(0);
  private cand = new Float64Array(0);
  private counts = new Map<number, number>();

  constructor(options: SamplingOptions = {}) {
    const o: Required<SamplingOptions> = {
      temperature: options.temperature ?? 0.8,
      topK: options.topK ?? 40,
      topP: options.topP ?? 0.95,
      minP: options.minP ?? 0.05,
      repeatPenalty: options.repeatPenalty ?? 1,
      repeatLastN: options.repeatLastN ?? 64,
      frequencyPenalty: options.frequencyPenalty ?? 0,
      presencePenalty: options.presencePenalty ?? 0,
      seed: options.seed ?? Math.floor(Math.random() * 2 ** 32),
    };
    const bad = (what: string) => new RyzansteinError("INVALID_ARGUMENT", `sampling: ${what}`);
    if (!Number.isFinite(o.temperature)) throw bad("temperature must be a finite number");
    if (!Number.isInteger(o.topK) || o.topK < 0) throw bad("topK must be a non-negative integer");
    if (!(o.topP > 0 && o.topP <= 1)) throw bad("topP must be in (0, 1]");
    if (!(o.minP >= 0 && o.minP <= 1)) throw bad("minP must be in [0, 1]");
    if (!(o.repeatPenalty > 0)) throw bad("repeatPenalty must be positive");
    if (!Number.isFinite(o.frequencyPenalty) || !Number.isFinite(o.presencePenalty))
      throw bad("penalties must be finite");
    this.options = o;
    this.rng = new Rng(o.seed);
  }

  /** Records tokens the penalties should see (the prompt, before generation). */
  accept(token: number): void {
    this.history.push(token);
  }

  /**
   * Picks a token from `logits` (not modified) and records it in the history.
   */
  sample(logits: Float32Array): number {
    const o = this.options;
    const n = logits.length;
    if (this.greedy) {
      // Greedy without penalties needs no scratch: a request never allocates vocabulary-sized arrays.
      const token = argmaxRow(logits, 0, n);
      this.history.push(token);
      return token;
    }
    if (this.ids.length !== n) {
      this.ids = new Int32Array(n);
      this.probs = new Float64Array(n);
      this.cand = new Float64Array(n);
    }
    const scores = this.probs;
    for (let i = 0; i < n; i++) scores[i] = logits[i];
    this.applyPenalties(scores);

    let token: number;
    if (o.temperature <= 0) {
      token = argmaxRow(scores, 0, n);
    } else {
      // Candidates sorted by score, cut by top-k.
      const ids = this.ids;
      let count = selectTop(scores, ids, o.topK > 0 ? Math.min(o.topK, n) : n);
      // Softmax over the candidates at temperature 1 for top-p / min-p, as llama.cpp does.
      const max = scores[ids[0]];
      const p = this.cand;
      let sum = 0;
      for (let i = 0; i < count; i++) {
        p[i] = Math.exp(scores[ids[i]] - max);
        sum += p[i];
      }
      if (o.topP < 1) {
        let cum = 0;
        for (let i = 0; i < count; i++) {
          cum += p[i] / sum;
          if (cum >= o.topP) {
            count = i + 1;
            break;
          }
        }
      }
      if (o.minP > 0) {
        let keep = 1;
        while (keep < count && p[keep] >= o.minP * p[0]) keep++;
        count = keep;
      }
      // Temperature, then draw.
      let total = 0;
      for (let i = 0; i < count; i++) {
        p[i] = Math.exp((scores[ids[i]] - max) / o.temperature);
        total += p[i];
      }
      let r = this.rng.next() * total;
      token = ids[count - 1];
      for (let i = 0; i < count; i++) {
        r -= p[i];
        if (r < 0) {
          token = ids[i];
          break;
        }
      }
    }
    this.history.push(token);
    return token;
  }

  /**
   * True when sample() is the argmax of the logits (temperature <= 0, no penalties): a caller may
   * then pick the token itself (e.g. `Backend.argmax` over many rows at once) and record it with
   * accept().
   */
  get greedy(): boolean {
    return this.options.temperature <= 0 && !this.penalizes();
  }

  private penalizes(): boolean {
    const o = this.options;
    return o.repeatPenalty !== 1 || o.frequencyPenalty !== 0 || o.presencePenalty !== 0;
  }

  private applyPenalties(scores: Float64Array): void {
    const o = this.options;
    if (!this.penalizes()) return;
    const lastN = o.repeatLastN < 0 ? this.history.length : Math.min(o.repeatLastN, this.history.length);
    const counts = this.counts;
    counts.clear();
    for (let i = this.history.length - lastN; i < this.history.length; i++) {
      const t = this.history[i];
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const [t, c] of counts) {
      if (t < 0 || t >= scores.length) continue;
      let s = scores[t];
      s = s <= 0 ? s * o.repeatPenalty : s / o.repeatPenalty;
      s -= c * o.frequencyPenalty + o.presencePenalty;
      scores[t] = s;
    }
  }
}

/** Writes the ids of the `k` largest scores into `ids[0..k)`, sorted descending; returns k. */
function selectTop(scores: Float64Array, ids: Int32Array, k: number): number {
  const n = scores.length;
  if (k >= n) {
    for (let i = 0; i < n; i++) ids[i] = i;
    ids.sort((a, b) => scores[b] - scores[a] || a - b);
    return n;
  }
  // Min-heap of size k over the scores.
  const heap = ids;
  let size = 0;
  const less = (a: number, b: number) => scores[a] < scores[b] || (scores[a] === scores[b] && a > b);
  for (let i = 0; i < n; i++) {
    if (size < k) {
      let j = size++;
      heap[j] = i;
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (!less(heap[j], heap[parent])) break;
        [heap[j], heap[parent]] = [heap[parent], heap[j]];
        j = parent;
      }
    } else if (less(heap[0], i)) {
      heap[0] = i;
      let j = 0;
      for (;;) {
        const l = 2 * j + 1;
        const r = l + 1;
        let m = j;
        if (l < size && less(heap[l], heap[m])) m = l;
        if (r < size && less(heap[r], heap[m])) m = r;
        if (m === j) break;
        [heap[j], heap[m]] = [heap[m], heap[j]];
        j = m;
      }
    }
  }
  const top = Array.from(heap.subarray(0, size));
  top.sort((a, b) => scores[b] - scores[a] || a - b);
  heap.set(top);
  return size;
}

/**
 * Natural-log probabilities of the `k` most likely tokens under `softmax(logits)` (temperature 1,
 * no filters), most likely first, plus the log-probability of `chosen`.
 */
export function topLogprobs(
  logits: Float32Array,
  k: number,
  chosen: number,
): { chosen: number; top: TokenLogprob[] } {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  const top: TokenLogprob[] = [];
  if (k > 0) {
    const scores = Float64Array.from(logits);
    const ids = new Int32Array(logits.length);
    const m = selectTop(scores, ids, Math.min(k, logits.length));
    for (let i = 0; i < m; i++) top.push({ token: ids[i], logprob: logits[ids[i]] - logZ });
  }
  return { chosen: logits[chosen] - logZ, top };
}
