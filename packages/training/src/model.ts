/**
 * A trainable Llama-architecture model: every parameter lives in one flat buffer (so the optimizer,
 * clipping and checkpoints see a single array), with named views in GGUF tensor order. The forward
 * and backward passes read top to bottom, each buffer with its shape.
 */
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { type AttentionShape, embedding, type FloatArray, type TrainOps } from "./ops.js";

/** Shape of a model to train from scratch (what `ryzanstein train --config` reads). */
export interface ModelShape {
  /** Transformer blocks. */
  nLayers: number;
  /** Residual width. */
  dim: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (divides `nHeads`; fewer means GQA). */
  nKvHeads: number;
  /** Feed-forward width. */
  ffnDim: number;
  /** Vocabulary size. */
  vocabSize: number;
  /** Context length written to the GGUF (training windows may be shorter). */
  contextLength: number;
  /** RMSNorm epsilon (default 1e-5). */
  normEps?: number;
  /** RoPE base (default 10000). */
  ropeFreqBase?: number;
}

/** One parameter tensor: its GGUF name, shape `[rows, cols]` (`[cols]` for vectors) and offset. */
export interface ParamSpec {
  /** GGUF tensor name. */
  name: string;
  /** ggml-order shape reversed: `[out, in]` for matrices, `[n]` for vectors. */
  shape: number[];
  /** Offset in the flat buffer. */
  offset: number;
  /** Elements. */
  size: number;
  /** True for RMSNorm weights (initialised to 1, no weight decay). */
  isNorm: boolean;
}

/** Validates a shape and fills in defaults. */
export function normalizeShape(s: ModelShape): Required<ModelShape> {
  const ints: (keyof ModelShape)[] = [
    "nLayers",
    "dim",
    "nHeads",
    "nKvHeads",
    "ffnDim",
    "vocabSize",
    "contextLength",
  ];
  for (const k of ints) {
    const v = s[k];
    if (!Number.isInteger(v) || (v as number) <= 0) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `model.${k} must be a positive integer, got ${String(v)}`,
      );
    }
  }
  if (s.dim % s.nHeads !== 0)
    throw new RyzansteinError("INVALID_ARGUMENT", `dim ${s.dim} is not a multiple of nHeads ${s.nHeads}`);
  if ((s.dim / s.nHeads) % 2 !== 0)
    throw new RyzansteinError("INVALID_ARGUMENT", "head dimension must be even (RoPE)");
  if (s.nHeads % s.nKvHeads !== 0)
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `nHeads ${s.nHeads} is not a multiple of nKvHeads ${s.nKvHeads}`,
    );
  return { normEps: 1e-5, ropeFreqBase: 10000, ...s };
}

/** The parameter layout of a shape, in GGUF order. */
export function paramLayout(shape: ModelShape): { specs: ParamSpec[]; total: number } {
  const s = normalizeShape(shape);
  const hd = s.dim / s.nHeads;
  const specs: ParamSpec[] = [];
  let offset = 0;
  const add = (name: string, dims: number[], isNorm = false) => {
    const size = dims.reduce((a, b) => a * b, 1);
    specs.push({ name, shape: dims, offset, size, isNorm });
    offset += size;
  };
  add("token_embd.weight", [s.vocabSize, s.dim]);
  for (let l = 0; l < s.nLayers; l++) {
    const p = `blk.${l}.`;
    add(`${p}attn_norm.weight`, [s.dim], true);
    add(`${p}attn_q.weight`, [s.nHeads * hd, s.dim]);
    add(`${p}attn_k.weight`, [s.nKvHeads * hd, s.dim]);
    add(`${p}attn_v.weight`, [s.nKvHeads * hd, s.dim]);
    add(`${p}attn_output.weight`, [s.dim, s.nHeads * hd]);
    add(`${p}ffn_norm.weight`, [s.dim], true);
    add(`${p}ffn_gate.weight`, [s.ffnDim, s.dim]);
    add(`${p}ffn_up.weight`, [s.ffnDim, s.dim]);
    add(`${p}ffn_down.weight`, [s.dim, s.ffnDim]);
  }
  add("output_norm.weight", [s.dim], true);
  add("output.weight", [s.vocabSize, s.dim]);
  return { specs, total: offset };
}

/** Seeded uniform generator in [0, 1) (xorshift128+ reduced to 32-bit state steps; deterministic). */
export function seededRandom(seed: number): () => number {
  let a = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let b = (seed * 0x85ebca6b + 0x632be59b) >>> 0 || 2;
  return () => {
    let t = a ^ (a << 11);
    t >>>= 0;
    a = b;
    b = (b ^ (b >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return (b + 0.5) / 4294967296;
  };
}

/**
 * Initial parameters: norms 1, matrices N(0, 0.02), with the residual output projections
 * (`attn_output`, `ffn_down`) scaled by 1/√(2·nLayers) as in GPT-2.
 */
export function initParams(shape: ModelShape, seed: number): Float32Array {
  const s = normalizeShape(shape);
  const { specs, total } = paramLayout(s);
  const out = new Float32Array(total);
  const rand = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(rand())) * Math.cos(2 * Math.PI * rand());
  for (const p of specs) {
    const view = out.subarray(p.offset, p.offset + p.size);
    if (p.isNorm) {
      view.fill(1);
      continue;
    }
    let std = 0.02;
    if (p.name.endsWith("attn_output.weight") || p.name.endsWith("ffn_down.weight"))
      std /= Math.sqrt(2 * s.nLayers);
    for (let i = 0; i < view.length; i++) view[i] = gauss() * std;
  }
  return out;
}

/**
 * Extra trainable terms on linear layers (LoRA adapters): called after each base `y = x·Wᵀ` with
 * the GGUF name of `W`, and in the backward pass with the same input.
 */
export interface LinearHook<A extends FloatArray> {
  /** Whether the weight `name` has an extra term. */
  has(name: string): boolean;
  /** `y += f(x)` for the `n` rows of `x`. */
  forward(name: string, y: A, x: A, n: number): void;
  /** `dx += ∂f/∂x·dy`, accumulating the hook's own parameter gradients. */
  backward(name: string, dx: A, dy: A, x: A, n: number): void;
}

interface LayerViews<A extends FloatArray> {
  attnNorm: A;
  wq: A;
  wk: A;
  wv: A;
  wo: A;
  ffnNorm: A;
  wGate: A;
  wUp: A;
  wDown: A;
}

interface Views<A extends FloatArray> {
  embd: A;
  layers: LayerViews<A>[];
  outputNorm: A;
  output: A;
}

function views<A extends FloatArray>(flat: A, shape: ModelShape): Views<A> {
  const { specs } = paramLayout(shape);
  const by = new Map(specs.map((p) => [p.name, flat.subarray(p.offset, p.offset + p.size) as A]));
  const get = (n: string) => by.get(n) as A;
  return {
    embd: get("token_embd.weight"),
    layers: Array.from({ length: shape.nLayers }, (_, l) => ({
      attnNorm: get(`blk.${l}.attn_norm.weight`),
      wq: get(`blk.${l}.attn_q.weight`),
      wk: get(`blk.${l}.attn_k.weight`),
      wv: get(`blk.${l}.attn_v.weight`),
      wo: get(`blk.${l}.attn_output.weight`),
      ffnNorm: get(`blk.${l}.ffn_norm.weight`),
      wGate: get(`blk.${l}.ffn_gate.weight`),
      wUp: get(`blk.${l}.ffn_up.weight`),
      wDown: get(`blk.${l}.ffn_down.weight`),
    })),
    outputNorm: get("output_norm.weight"),
    output: get("output.weight"),
  };
}

interface LayerActs<A extends FloatArray> {
  xIn: A; // [n, dim] residual entering the block
  xn1: A; // [n, dim]
  q: A; // [n, qDim] after RoPE
  k: A; // [n, kvDim] after RoPE
  v: A; // [n, kvDim]
  probs: A; // [batch, nHeads, seq, seq]
  att: A; // [n, qDim]
  xMid: A; // [n, dim]
  xn2: A; // [n, dim]
  gate: A; // [n, ffn]
  up: A; // [n, ffn]
  h: A; // [n, ffn] silu(gate)*up
}

/**
 * Forward and backward of a model over packed windows, with every activation buffer allocated
 * once for a fixed `(batch, seq)`.
 */
export class TrainGraph<A extends FloatArray> {
  /** The model shape. */
  readonly shape: Required<ModelShape>;
  /** Windows per call. */
  readonly batch: number;
  /** Tokens per window. */
  readonly seq: number;
  private readonly ops: TrainOps<A>;
  private readonly acts: LayerActs<A>[];
  private readonly xFinal: A;
  private readonly xnF: A;
  private readonly logits: A;
  private readonly scratch: {
    dx: A;
    dxn: A;
    datt: A;
    dq: A;
    dk: A;
    dv: A;
    dh: A;
    dgate: A;
    dup: A;
    dlogits: A;
  };
  private readonly attn: AttentionShape;
  private readonly hook: LinearHook<A> | undefined;
  private readonly normScratch: A;

  /**
   * @param hook - adapters on linear layers (LoRA); with a hook, {@link step} runs the backward
   *   pass even without base gradients (a frozen base).
   */
  constructor(shape: ModelShape, batch: number, seq: number, ops: TrainOps<A>, hook?: LinearHook<A>) {
    this.hook = hook;
    this.shape = normalizeShape(shape);
    this.batch = batch;
    this.seq = seq;
    this.ops = ops;
    const s = this.shape;
    const n = batch * seq;
    const hd = s.dim / s.nHeads;
    const qDim = s.nHeads * hd;
    const kvDim = s.nKvHeads * hd;
    const a = (len: number) => ops.alloc(len);
    this.acts = Array.from({ length: s.nLayers }, () => ({
      xIn: a(n * s.dim),
      xn1: a(n * s.dim),
      q: a(n * qDim),
      k: a(n * kvDim),
      v: a(n * kvDim),
      probs: a(batch * s.nHeads * seq * seq),
      att: a(n * qDim),
      xMid: a(n * s.dim),
      xn2: a(n * s.dim),
      gate: a(n * s.ffnDim),
      up: a(n * s.ffnDim),
      h: a(n * s.ffnDim),
    }));
    this.xFinal = a(n * s.dim);
    this.xnF = a(n * s.dim);
    this.logits = a(n * s.vocabSize);
    this.scratch = {
      dx: a(n * s.dim),
      dxn: a(n * s.dim),
      datt: a(n * qDim),
      dq: a(n * qDim),
      dk: a(n * kvDim),
      dv: a(n * kvDim),
      dh: a(n * s.ffnDim),
      dgate: a(n * s.ffnDim),
      dup: a(n * s.ffnDim),
      dlogits: a(n * s.vocabSize),
    };
    this.attn = { batch, seq, nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: hd, scale: 1 / Math.sqrt(hd) };
    this.normScratch = a(s.dim);
  }

  /**
   * Runs the forward pass on `tokens` (`[batch, seq]` inputs) against `targets` (`[batch, seq]`,
   * −1 = ignored) and returns the summed cross-entropy (nats). With `grads`, also runs the backward
   * pass and adds `lossScale · ∂loss/∂params` into `grads` (same flat layout as `params`). With
   * `backward` but no `grads` the base is frozen and only the hook's parameters get gradients.
   */
  step(
    params: A,
    tokens: Int32Array,
    targets: Int32Array,
    grads?: A,
    lossScale = 1,
    backward = grads !== undefined,
  ): number {
    const s = this.shape;
    const base = this.ops;
    const hook = this.hook;
    // linear layers with the hook's extra terms (forward) and frozen-base aware gradients (backward)
    const o = {
      ...base,
      linearNamed: (name: string, y: A, x: A, w: A, n: number, inDim: number, outDim: number) => {
        base.linear(y, x, w, n, inDim, outDim);
        if (hook?.has(name)) hook.forward(name, y, x, n);
      },
      backNamed: (
        name: string,
        dw: A | undefined,
        dx: A,
        dy: A,
        x: A,
        w: A,
        n: number,
        inDim: number,
        outDim: number,
        accumulate: boolean,
      ) => {
        if (dw) base.linearBackwardWeight(dw, dy, x, n, inDim, outDim);
        base.linearBackwardInput(dx, dy, w, n, inDim, outDim, accumulate);
        if (hook?.has(name)) hook.backward(name, dx, dy, x, n);
      },
    };
    const n = this.batch * this.seq;
    if (tokens.length < n || targets.length < n)
      throw new RyzansteinError("SHAPE_MISMATCH", "tokens/targets too short");
    for (let i = 0; i < n; i++) {
      if (tokens[i] < 0 || tokens[i] >= s.vocabSize || targets[i] >= s.vocabSize) {
        throw new RyzansteinError("OUT_OF_BOUNDS", `token id outside the vocabulary of ${s.vocabSize}`);
      }
    }
    const w = views(params, s);
    const hd = s.dim / s.nHeads;
    const qDim = s.nHeads * hd;
    const kvDim = s.nKvHeads * hd;

    // ---- forward ----
    let x = this.acts.length > 0 ? this.acts[0].xIn : this.xFinal;
    embedding(x, w.embd, tokens, n, s.dim); // x [n, dim]
    for (let l = 0; l < s.nLayers; l++) {
      const a = this.acts[l];
      const L = w.layers[l];
      o.rmsNorm(a.xn1, a.xIn, L.attnNorm, n, s.dim, s.normEps); // xn1 [n, dim]
      o.linearNamed(`blk.${l}.attn_q.weight`, a.q, a.xn1, L.wq, n, s.dim, qDim); // q [n, qDim]
      o.linearNamed(`blk.${l}.attn_k.weight`, a.k, a.xn1, L.wk, n, s.dim, kvDim); // k [n, kvDim]
      o.linearNamed(`blk.${l}.attn_v.weight`, a.v, a.xn1, L.wv, n, s.dim, kvDim); // v [n, kvDim]
      o.rope(a.q, n, this.seq, s.nHeads, hd, s.ropeFreqBase, 1);
      o.rope(a.k, n, this.seq, s.nKvHeads, hd, s.ropeFreqBase, 1);
      o.attention(a.att, a.probs, a.q, a.k, a.v, this.attn); // att [n, qDim]
      o.linearNamed(`blk.${l}.attn_output.weight`, a.xMid, a.att, L.wo, n, qDim, s.dim); // xMid = xIn + att·Woᵀ
      for (let i = 0; i < n * s.dim; i++) a.xMid[i] += a.xIn[i];
      o.rmsNorm(a.xn2, a.xMid, L.ffnNorm, n, s.dim, s.normEps); // xn2 [n, dim]
      o.linearNamed(`blk.${l}.ffn_gate.weight`, a.gate, a.xn2, L.wGate, n, s.dim, s.ffnDim); // gate [n, ffn]
      o.linearNamed(`blk.${l}.ffn_up.weight`, a.up, a.xn2, L.wUp, n, s.dim, s.ffnDim); // up [n, ffn]
      o.swiglu(a.h, a.gate, a.up, n * s.ffnDim); // h [n, ffn]
      x = l + 1 < s.nLayers ? this.acts[l + 1].xIn : this.xFinal;
      o.linearNamed(`blk.${l}.ffn_down.weight`, x, a.h, L.wDown, n, s.ffnDim, s.dim); // next x = xMid + h·Wdownᵀ
      for (let i = 0; i < n * s.dim; i++) x[i] += a.xMid[i];
    }
    o.rmsNorm(this.xnF, this.xFinal, w.outputNorm, n, s.dim, s.normEps); // xnF [n, dim]
    o.linearNamed("output.weight", this.logits, this.xnF, w.output, n, s.dim, s.vocabSize); // logits [n, vocab]
    const sc = this.scratch;
    const loss = o.crossEntropy(
      this.logits,
      targets,
      n,
      s.vocabSize,
      backward ? sc.dlogits : null,
      lossScale,
    );
    if (!backward) return loss;

    // ---- backward ---- (without `grads` the base is frozen: only input gradients flow)
    const g = grads ? views(grads, s) : undefined;
    const ns = this.normScratch;
    const dx = sc.dx; // [n, dim] gradient of the residual stream
    o.backNamed(
      "output.weight",
      g?.output,
      sc.dxn,
      sc.dlogits,
      this.xnF,
      w.output,
      n,
      s.dim,
      s.vocabSize,
      false,
    );
    dx.fill(0);
    o.rmsNormBackward(dx, g?.outputNorm ?? ns, sc.dxn, this.xFinal, w.outputNorm, n, s.dim, s.normEps);
    for (let l = s.nLayers - 1; l >= 0; l--) {
      const a = this.acts[l];
      const L = w.layers[l];
      const G = g?.layers[l];
      const p = `blk.${l}.`;
      // feed-forward block: dx flows to xMid unchanged plus through the FFN
      o.backNamed(`${p}ffn_down.weight`, G?.wDown, sc.dh, dx, a.h, L.wDown, n, s.ffnDim, s.dim, false);
      o.swigluBackward(sc.dgate, sc.dup, sc.dh, a.gate, a.up, n * s.ffnDim);
      o.backNamed(
        `${p}ffn_gate.weight`,
        G?.wGate,
        sc.dxn,
        sc.dgate,
        a.xn2,
        L.wGate,
        n,
        s.dim,
        s.ffnDim,
        false,
      );
      o.backNamed(`${p}ffn_up.weight`, G?.wUp, sc.dxn, sc.dup, a.xn2, L.wUp, n, s.dim, s.ffnDim, true);
      o.rmsNormBackward(dx, G?.ffnNorm ?? ns, sc.dxn, a.xMid, L.ffnNorm, n, s.dim, s.normEps);
      // attention block
      o.backNamed(`${p}attn_output.weight`, G?.wo, sc.datt, dx, a.att, L.wo, n, qDim, s.dim, false);
      o.attentionBackward(sc.dq, sc.dk, sc.dv, a.q, a.k, a.v, a.probs, sc.datt, this.attn);
      o.rope(sc.dq, n, this.seq, s.nHeads, hd, s.ropeFreqBase, -1);
      o.rope(sc.dk, n, this.seq, s.nKvHeads, hd, s.ropeFreqBase, -1);
      o.backNamed(`${p}attn_q.weight`, G?.wq, sc.dxn, sc.dq, a.xn1, L.wq, n, s.dim, qDim, false);
      o.backNamed(`${p}attn_k.weight`, G?.wk, sc.dxn, sc.dk, a.xn1, L.wk, n, s.dim, kvDim, true);
      o.backNamed(`${p}attn_v.weight`, G?.wv, sc.dxn, sc.dv, a.xn1, L.wv, n, s.dim, kvDim, true);
      o.rmsNormBackward(dx, G?.attnNorm ?? ns, sc.dxn, a.xIn, L.attnNorm, n, s.dim, s.normEps);
    }
    if (g) o.embeddingBackward(g.embd, dx, tokens, n, s.dim);
    return loss;
  }
}
