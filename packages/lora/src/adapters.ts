/** LoRA adapters as a {@link LinearHook} of the training graph: `y += (alpha/r)·(x·Aᵀ)·Bᵀ`. */
import {
  type FloatArray,
  type LinearHook,
  type ModelShape,
  paramLayout,
  seededRandom,
  type TrainOps,
} from "@ryzanstein/training";
import { type LoraConfig, resolveTargets } from "./config.js";

/** One adapter's place in the flat buffers. */
export interface AdapterSpec {
  /** Base weight (GGUF name). */
  name: string;
  /** Input width of the base weight. */
  inDim: number;
  /** Output width of the base weight. */
  outDim: number;
  /** Offset of A `[rank, inDim]` in the flat buffer. */
  aOffset: number;
  /** Offset of B `[outDim, rank]`. */
  bOffset: number;
}

/** Trainable LoRA adapters over a model shape; parameters and gradients in single flat buffers. */
export class LoraAdapters<A extends FloatArray> implements LinearHook<A> {
  /** Rank. */
  readonly rank: number;
  /** Alpha. */
  readonly alpha: number;
  /** `alpha / rank`. */
  readonly scale: number;
  /** Dropout on the adapter input (training only). */
  dropout: number;
  /** Adapters in base-weight order. */
  readonly specs: AdapterSpec[];
  /** All A and B matrices. */
  readonly params: A;
  /** Their gradients (accumulated by the backward pass). */
  readonly grads: A;
  private readonly ops: TrainOps<A>;
  private readonly byName: Map<string, AdapterSpec>;
  /** Per adapter: `t = x·Aᵀ` `[rows, r]` of the last forward (B's gradient needs it). */
  private readonly saved = new Map<string, A>();
  private readonly maxRows: number;
  private readonly seed: number;
  /** Forward passes begun: dropout masks are a hash of (seed, pass, adapter, element). */
  private pass = 0;
  private scratch: { u: A; dt: A; dxs: A; xd: A } | undefined;

  /**
   * @param maxRows - most rows one forward call passes (batch × seq)
   * @param seed - initialisation (A: uniform ±1/√in, B: zero, so training starts at the base) and dropout
   */
  constructor(shape: ModelShape, cfg: LoraConfig, ops: TrainOps<A>, maxRows: number, seed = 1) {
    const layout = paramLayout(shape).specs;
    const targets = resolveTargets(
      cfg,
      layout.map((s) => s.name),
    );
    this.rank = cfg.rank;
    this.alpha = cfg.alpha;
    this.scale = cfg.alpha / cfg.rank;
    this.dropout = cfg.dropout ?? 0;
    this.ops = ops;
    this.maxRows = maxRows;
    let off = 0;
    this.specs = targets.map((name) => {
      const s = layout.find((p) => p.name === name) as (typeof layout)[number];
      const [outDim, inDim] = s.shape;
      const spec = { name, inDim, outDim, aOffset: off, bOffset: off + cfg.rank * inDim };
      off += cfg.rank * (inDim + outDim);
      return spec;
    });
    this.byName = new Map(this.specs.map((s) => [s.name, s]));
    this.params = ops.alloc(off);
    this.grads = ops.alloc(off);
    this.seed = seed;
    const rand = seededRandom(seed);
    for (const s of this.specs) {
      const bound = 1 / Math.sqrt(s.inDim);
      for (let i = 0; i < this.rank * s.inDim; i++) this.params[s.aOffset + i] = (rand() * 2 - 1) * bound;
    }
  }

  /**
   * Starts a forward pass. Dropout masks are regenerated from (seed, pass, adapter, element)
   * rather than stored, so a recomputed layer (activation checkpointing) sees the same mask and
   * no `[rows, in]` mask is kept per adapter.
   */
  beginPass(): void {
    this.pass++;
  }

  /** A `[rank, in]` and B `[out, rank]` of an adapter (views). */
  matrices(name: string): { a: A; b: A; spec: AdapterSpec } {
    const s = this.byName.get(name);
    if (!s) throw new Error(`no adapter on ${name}`);
    return {
      a: this.params.subarray(s.aOffset, s.aOffset + this.rank * s.inDim) as A,
      b: this.params.subarray(s.bOffset, s.bOffset + s.outDim * this.rank) as A,
      spec: s,
    };
  }

  /** {@inheritDoc @ryzanstein/training!LinearHook.has} */
  has(name: string): boolean {
    return this.byName.has(name);
  }

  private scratchFor(): { u: A; dt: A; dxs: A; xd: A } {
    if (!this.scratch) {
      const maxOut = Math.max(...this.specs.map((s) => s.outDim));
      const maxIn = Math.max(...this.specs.map((s) => s.inDim));
      const drop = this.dropout > 0;
      this.scratch = {
        u: this.ops.alloc(this.maxRows * maxOut),
        dt: this.ops.alloc(this.maxRows * this.rank),
        dxs: this.ops.alloc(drop ? this.maxRows * maxIn : 0),
        xd: this.ops.alloc(drop ? this.maxRows * maxIn : 0),
      };
    }
    return this.scratch;
  }

  /** {@inheritDoc @ryzanstein/training!LinearHook.forward} */
  forward(name: string, y: A, x: A, n: number): void {
    const { a, b, spec } = this.matrices(name);
    const r = this.rank;
    let t = this.saved.get(name);
    if (!t) {
      t = this.ops.alloc(this.maxRows * r);
      this.saved.set(name, t);
    }
    const sc = this.scratchFor();
    let xd = x;
    if (this.dropout > 0) {
      if (sc.xd.length < n * spec.inDim) this.scratch = undefined; // dropout switched on after the first call
      const s2 = this.scratchFor();
      const mask = this.maskOf(this.specs.indexOf(spec));
      for (let i = 0; i < n * spec.inDim; i++) s2.xd[i] = x[i] * mask(i);
      xd = s2.xd;
    }
    const { u } = this.scratchFor();
    this.ops.linear(t, xd, a, n, spec.inDim, r); // t [n, r]
    this.ops.linear(u, t, b, n, r, spec.outDim); // u [n, out]
    for (let i = 0; i < n * spec.outDim; i++) y[i] += this.scale * u[i];
  }

  /** {@inheritDoc @ryzanstein/training!LinearHook.backward} */
  backward(name: string, dx: A, dy: A, x: A, n: number): void {
    const { a, b, spec } = this.matrices(name);
    const t = this.saved.get(name);
    if (!t) throw new Error(`backward before forward on ${name}`);
    const r = this.rank;
    const { u: dys, dt, dxs, xd } = this.scratchFor();
    for (let i = 0; i < n * spec.outDim; i++) dys[i] = this.scale * dy[i];
    const ga = this.grads.subarray(spec.aOffset, spec.aOffset + r * spec.inDim) as A;
    const gb = this.grads.subarray(spec.bOffset, spec.bOffset + spec.outDim * r) as A;
    this.ops.linearBackwardWeight(gb, dys, t, n, r, spec.outDim);
    this.ops.linearBackwardInput(dt, dys, b, n, r, spec.outDim, false);
    if (this.dropout <= 0) {
      this.ops.linearBackwardWeight(ga, dt, x, n, spec.inDim, r);
      this.ops.linearBackwardInput(dx, dt, a, n, spec.inDim, r, true);
      return;
    }
    // the same mask as the forward of this pass: dxd = dt·A, dx += dxd ⊙ mask/(1−p) (= dxd·xd/x)
    const si = this.specs.indexOf(spec);
    const len = n * spec.inDim;
    const mask = this.maskOf(si);
    for (let i = 0; i < len; i++) xd[i] = x[i] * mask(i);
    this.ops.linearBackwardWeight(ga, dt, xd, n, spec.inDim, r);
    this.ops.linearBackwardInput(dxs, dt, a, n, spec.inDim, r, false);
    for (let i = 0; i < len; i++) dx[i] += dxs[i] * mask(i);
  }

  /** The dropout mask (0 or 1/(1−p)) of adapter `si` in this pass, by element index. */
  private maskOf(si: number): (i: number) => number {
    const keep = 1 / (1 - this.dropout);
    const threshold = Math.floor(this.dropout * 4294967296);
    const k = mix(mix(this.seed ^ 0x5bd1e995, this.pass), si);
    return (i) => (mix(k, i) >>> 0 < threshold ? 0 : keep);
  }
}

/** A 32-bit integer mix of two values (murmur3 finalizer over a combined word). */
function mix(a: number, b: number): number {
  let h = Math.imul(a ^ Math.imul(b, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
