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
  private readonly saved = new Map<string, { t: A; xd: A | null; mask: A | null }>();
  private readonly maxRows: number;
  private readonly rand: () => number;
  private scratch: { u: A; dt: A; dxs: A } | undefined;

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
    this.rand = seededRandom(seed);
    for (const s of this.specs) {
      const bound = 1 / Math.sqrt(s.inDim);
      for (let i = 0; i < this.rank * s.inDim; i++)
        this.params[s.aOffset + i] = (this.rand() * 2 - 1) * bound;
    }
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

  private scratchFor(): { u: A; dt: A; dxs: A } {
    if (!this.scratch) {
      const maxOut = Math.max(...this.specs.map((s) => s.outDim));
      const maxIn = Math.max(...this.specs.map((s) => s.inDim));
      this.scratch = {
        u: this.ops.alloc(this.maxRows * maxOut),
        dt: this.ops.alloc(this.maxRows * this.rank),
        dxs: this.ops.alloc(this.maxRows * maxIn),
      };
    }
    return this.scratch;
  }

  /** {@inheritDoc @ryzanstein/training!LinearHook.forward} */
  forward(name: string, y: A, x: A, n: number): void {
    const { a, b, spec } = this.matrices(name);
    const r = this.rank;
    let sv = this.saved.get(name);
    if (!sv) {
      const drop = this.dropout > 0;
      sv = {
        t: this.ops.alloc(this.maxRows * r),
        xd: drop ? this.ops.alloc(this.maxRows * spec.inDim) : null,
        mask: drop ? this.ops.alloc(this.maxRows * spec.inDim) : null,
      };
      this.saved.set(name, sv);
    }
    let xd = x;
    if (this.dropout > 0 && sv.xd && sv.mask) {
      const keep = 1 / (1 - this.dropout);
      for (let i = 0; i < n * spec.inDim; i++) {
        sv.mask[i] = this.rand() < this.dropout ? 0 : keep;
        sv.xd[i] = x[i] * sv.mask[i];
      }
      xd = sv.xd;
    }
    const { u } = this.scratchFor();
    this.ops.linear(sv.t, xd, a, n, spec.inDim, r); // t [n, r]
    this.ops.linear(u, sv.t, b, n, r, spec.outDim); // u [n, out]
    for (let i = 0; i < n * spec.outDim; i++) y[i] += this.scale * u[i];
  }

  /** {@inheritDoc @ryzanstein/training!LinearHook.backward} */
  backward(name: string, dx: A, dy: A, x: A, n: number): void {
    const { a, b, spec } = this.matrices(name);
    const sv = this.saved.get(name);
    if (!sv) throw new Error(`backward before forward on ${name}`);
    const r = this.rank;
    const { u: dys, dt, dxs } = this.scratchFor();
    for (let i = 0; i < n * spec.outDim; i++) dys[i] = this.scale * dy[i];
    const ga = this.grads.subarray(spec.aOffset, spec.aOffset + r * spec.inDim) as A;
    const gb = this.grads.subarray(spec.bOffset, spec.bOffset + spec.outDim * r) as A;
    this.ops.linearBackwardWeight(gb, dys, sv.t, n, r, spec.outDim);
    this.ops.linearBackwardInput(dt, dys, b, n, r, spec.outDim, false);
    const xd = sv.xd ?? x;
    this.ops.linearBackwardWeight(ga, dt, xd, n, spec.inDim, r);
    if (!sv.mask) {
      this.ops.linearBackwardInput(dx, dt, a, n, spec.inDim, r, true);
    } else {
      this.ops.linearBackwardInput(dxs, dt, a, n, spec.inDim, r, false);
      for (let i = 0; i < n * spec.inDim; i++) dx[i] += dxs[i] * sv.mask[i];
    }
  }
}
