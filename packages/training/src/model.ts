/**
 * A trainable Llama-architecture model: every parameter lives in one flat buffer (so the optimizer,
 * clipping and checkpoints see a single array), with named views in GGUF tensor order. The forward
 * and backward passes read top to bottom, each buffer with its shape.
 */
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { type AttentionShape, embedding, type FloatArray, type FrozenMatrix, type TrainOps } from "./ops.js";

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
 * The weights of a frozen base kept in their storage formats (QLoRA): every matrix as a
 * {@link FrozenMatrix} (F32/F16/BF16/Q8_0/Q4_0, mapped or repacked, never decoded as a whole),
 * the RMSNorm vectors as F32. Keys are GGUF tensor names in {@link paramLayout} order;
 * `token_embd.weight` must be in the file layout (it is read by row).
 */
export interface FrozenModel {
  /** Matrices by GGUF name (`output.weight` may share the embedding's tensor). */
  matrices: Map<string, FrozenMatrix>;
  /** RMSNorm weights by GGUF name. */
  norms: Map<string, Float32Array>;
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
  /**
   * Called at the start of every forward pass. With activation checkpointing a layer's forward
   * runs twice in one pass (the recomputation), so anything random (dropout) must depend on the
   * pass, not on the number of calls.
   */
  beginPass?(): void;
}

/** Options of {@link TrainGraph}. */
export interface TrainGraphOptions {
  /**
   * Activation checkpointing per layer: keep only each layer's input during the forward pass and
   * recompute the layer's activations during the backward pass (one layer's activations in memory
   * instead of all of them, for about one more forward pass of compute). Gradients are the same.
   */
  checkpointLayers?: boolean;
}

/** A linear weight: a trainable F32/F64 view, or a frozen matrix in its storage format. */
type Weight<A extends FloatArray> = A | FrozenMatrix;

function isFrozen<A extends FloatArray>(w: Weight<A>): w is FrozenMatrix {
  return !ArrayBuffer.isView(w);
}

interface LayerViews<A extends FloatArray> {
  attnNorm: A;
  wq: Weight<A>;
  wk: Weight<A>;
  wv: Weight<A>;
  wo: Weight<A>;
  ffnNorm: A;
  wGate: Weight<A>;
  wUp: Weight<A>;
  wDown: Weight<A>;
}

interface Views<A extends FloatArray> {
  embd: Weight<A>;
  layers: LayerViews<A>[];
  outputNorm: A;
  output: Weight<A>;
}

function layerViews<A extends FloatArray>(
  nLayers: number,
  mat: (name: string) => Weight<A>,
  norm: (name: string) => A,
): Views<A> {
  return {
    embd: mat("token_embd.weight"),
    layers: Array.from({ length: nLayers }, (_, l) => ({
      attnNorm: norm(`blk.${l}.attn_norm.weight`),
      wq: mat(`blk.${l}.attn_q.weight`),
      wk: mat(`blk.${l}.attn_k.weight`),
      wv: mat(`blk.${l}.attn_v.weight`),
      wo: mat(`blk.${l}.attn_output.weight`),
      ffnNorm: norm(`blk.${l}.ffn_norm.weight`),
      wGate: mat(`blk.${l}.ffn_gate.weight`),
      wUp: mat(`blk.${l}.ffn_up.weight`),
      wDown: mat(`blk.${l}.ffn_down.weight`),
    })),
    outputNorm: norm("output_norm.weight"),
    output: mat("output.weight"),
  };
}

function views<A extends FloatArray>(flat: A, shape: ModelShape): Views<A> {
  const { specs } = paramLayout(shape);
  const by = new Map(specs.map((p) => [p.name, flat.subarray(p.offset, p.offset + p.size) as A]));
  const get = (n: string) => by.get(n) as A;
  return layerViews<A>(shape.nLayers, get, get);
}

function frozenViews<A extends FloatArray>(m: FrozenModel, shape: ModelShape, ops: TrainOps<A>): Views<A> {
  const { specs } = paramLayout(shape);
  for (const p of specs) {
    const w = m.matrices.get(p.name)?.native;
    const ok = p.isNorm
      ? m.norms.get(p.name)?.length === p.size
      : w?.rows === p.shape[0] && w?.cols === p.shape[1];
    if (!ok)
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `frozen model: ${p.name} is missing or has the wrong shape`,
      );
  }
  return layerViews<A>(
    shape.nLayers,
    (n) => m.matrices.get(n) as FrozenMatrix,
    (n) => {
      const v = ops.alloc((m.norms.get(n) as Float32Array).length);
      v.set(m.norms.get(n) as Float32Array);
      return v;
    },
  );
}

interface LayerActs<A extends FloatArray> {
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

/** Linear layers as the graph calls them: frozen or trainable weight, plus the hook's term. */
interface Linear<A extends FloatArray> {
  forward(name: string, y: A, x: A, w: Weight<A>, n: number, inDim: number, outDim: number): void;
  backward(
    name: string,
    dw: A | undefined,
    dx: A,
    dy: A,
    x: A,
    w: Weight<A>,
    n: number,
    inDim: number,
    outDim: number,
    accumulate: boolean,
  ): void;
}

/**
 * Forward and backward of a model over packed windows, with every activation buffer allocated
 * once for a fixed `(batch, seq)`. The base weights are either one flat trainable buffer or a
 * {@link FrozenModel} in its storage formats (then only a hook's parameters train).
 */
export class TrainGraph<A extends FloatArray> {
  /** The model shape. */
  readonly shape: Required<ModelShape>;
  /** Windows per call. */
  readonly batch: number;
  /** Tokens per window. */
  readonly seq: number;
  /** Whether layer activations are recomputed in the backward pass (see {@link TrainGraphOptions}). */
  readonly checkpointLayers: boolean;
  private readonly ops: TrainOps<A>;
  /** `[n, dim]` residual entering each layer. */
  private readonly xIns: A[];
  /** One set per layer, or a single shared set with checkpointing. */
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
  private frozenCache: { model: FrozenModel; views: Views<A> } | undefined;

  /**
   * @param hook - adapters on linear layers (LoRA); with a hook, {@link step} runs the backward
   *   pass even without base gradients (a frozen base).
   */
  constructor(
    shape: ModelShape,
    batch: number,
    seq: number,
    ops: TrainOps<A>,
    hook?: LinearHook<A>,
    options: TrainGraphOptions = {},
  ) {
    this.hook = hook;
    this.shape = normalizeShape(shape);
    this.batch = batch;
    this.seq = seq;
    this.ops = ops;
    this.checkpointLayers = options.checkpointLayers ?? false;
    const s = this.shape;
    const n = batch * seq;
    const hd = s.dim / s.nHeads;
    const qDim = s.nHeads * hd;
    const kvDim = s.nKvHeads * hd;
    const a = (len: number) => ops.alloc(len);
    this.xIns = Array.from({ length: s.nLayers }, () => a(n * s.dim));
    const sets = this.checkpointLayers ? Math.min(1, s.nLayers) : s.nLayers;
    this.acts = Array.from({ length: sets }, () => ({
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

  /** Bytes of the activation and gradient buffers this graph holds (the graph's own memory). */
  get activationBytes(): number {
    const bufs: A[] = [
      ...this.xIns,
      ...this.acts.flatMap((a) => Object.values(a) as A[]),
      this.xFinal,
      this.xnF,
      this.logits,
      ...(Object.values(this.scratch) as A[]),
      this.normScratch,
    ];
    return bufs.reduce((t, b) => t + b.byteLength, 0);
  }

  private linear(): Linear<A> {
    const base = this.ops;
    const hook = this.hook;
    return {
      forward: (name, y, x, w, n, inDim, outDim) => {
        if (isFrozen(w)) base.linearFrozen(y, x, w, n);
        else base.linear(y, x, w, n, inDim, outDim);
        if (hook?.has(name)) hook.forward(name, y, x, n);
      },
      backward: (name, dw, dx, dy, x, w, n, inDim, outDim, accumulate) => {
        if (isFrozen(w)) {
          base.linearFrozenBackwardInput(dx, dy, w, n, accumulate);
        } else {
          if (dw) base.linearBackwardWeight(dw, dy, x, n, inDim, outDim);
          base.linearBackwardInput(dx, dy, w, n, inDim, outDim, accumulate);
        }
        if (hook?.has(name)) hook.backward(name, dx, dy, x, n);
      },
    };
  }

  /**
   * Layer `l` forward from `xIn`: fills `a`, and when `xOut` is given writes the layer's output
   * (a recomputation for the backward pass stops before the down projection, whose output it
   * does not need).
   */
  private layerForward(
    lin: Linear<A>,
    w: Views<A>,
    l: number,
    a: LayerActs<A>,
    xIn: A,
    xOut: A | null,
  ): void {
    const s = this.shape;
    const o = this.ops;
    const L = w.layers[l];
    const n = this.batch * this.seq;
    const hd = s.dim / s.nHeads;
    const qDim = s.nHeads * hd;
    const kvDim = s.nKvHeads * hd;
    o.rmsNorm(a.xn1, xIn, L.attnNorm, n, s.dim, s.normEps); // xn1 [n, dim]
    lin.forward(`blk.${l}.attn_q.weight`, a.q, a.xn1, L.wq, n, s.dim, qDim); // q [n, qDim]
    lin.forward(`blk.${l}.attn_k.weight`, a.k, a.xn1, L.wk, n, s.dim, kvDim); // k [n, kvDim]
    lin.forward(`blk.${l}.attn_v.weight`, a.v, a.xn1, L.wv, n, s.dim, kvDim); // v [n, kvDim]
    o.rope(a.q, n, this.seq, s.nHeads, hd, s.ropeFreqBase, 1);
    o.rope(a.k, n, this.seq, s.nKvHeads, hd, s.ropeFreqBase, 1);
    o.attention(a.att, a.probs, a.q, a.k, a.v, this.attn); // att [n, qDim]
    lin.forward(`blk.${l}.attn_output.weight`, a.xMid, a.att, L.wo, n, qDim, s.dim); // xMid = xIn + att·Woᵀ
    for (let i = 0; i < n * s.dim; i++) a.xMid[i] += xIn[i];
    o.rmsNorm(a.xn2, a.xMid, L.ffnNorm, n, s.dim, s.normEps); // xn2 [n, dim]
    lin.forward(`blk.${l}.ffn_gate.weight`, a.gate, a.xn2, L.wGate, n, s.dim, s.ffnDim); // gate [n, ffn]
    lin.forward(`blk.${l}.ffn_up.weight`, a.up, a.xn2, L.wUp, n, s.dim, s.ffnDim); // up [n, ffn]
    o.swiglu(a.h, a.gate, a.up, n * s.ffnDim); // h [n, ffn]
    if (!xOut) return;
    lin.forward(`blk.${l}.ffn_down.weight`, xOut, a.h, L.wDown, n, s.ffnDim, s.dim); // xOut = xMid + h·Wdownᵀ
    for (let i = 0; i < n * s.dim; i++) xOut[i] += a.xMid[i];
  }

  private weights(params: A | FrozenModel): Views<A> {
    if (ArrayBuffer.isView(params)) return views(params as A, this.shape);
    const m = params as FrozenModel;
    if (this.frozenCache?.model !== m)
      this.frozenCache = { model: m, views: frozenViews(m, this.shape, this.ops) };
    return this.frozenCache.views;
  }

  /**
   * Runs the forward pass on `tokens` (`[batch, seq]` inputs) against `targets` (`[batch, seq]`,
   * −1 = ignored) and returns the summed cross-entropy (nats). With `grads`, also runs the backward
   * pass and adds `lossScale · ∂loss/∂params` into `grads` (same flat layout as `params`). With
   * `backward` but no `grads` the base is frozen and only the hook's parameters get gradients.
   * `params` may be a {@link FrozenModel} (then `grads` must be omitted).
   */
  step(
    params: A | FrozenModel,
    tokens: Int32Array,
    targets: Int32Array,
    grads?: A,
    lossScale = 1,
    backward = grads !== undefined,
  ): number {
    const s = this.shape;
    const o = this.ops;
    const lin = this.linear();
    const n = this.batch * this.seq;
    if (tokens.length < n || targets.length < n)
      throw new RyzansteinError("SHAPE_MISMATCH", "tokens/targets too short");
    for (let i = 0; i < n; i++) {
      if (tokens[i] < 0 || tokens[i] >= s.vocabSize || targets[i] >= s.vocabSize) {
        throw new RyzansteinError("OUT_OF_BOUNDS", `token id outside the vocabulary of ${s.vocabSize}`);
      }
    }
    if (grads && !ArrayBuffer.isView(params))
      throw new RyzansteinError("INVALID_ARGUMENT", "a frozen model has no parameter gradients");
    const w = this.weights(params);
    const hd = s.dim / s.nHeads;
    const qDim = s.nHeads * hd;
    const kvDim = s.nKvHeads * hd;
    const actsOf = (l: number) => this.acts[this.checkpointLayers ? 0 : l];
    this.hook?.beginPass?.();

    // ---- forward ----
    const x0 = s.nLayers > 0 ? this.xIns[0] : this.xFinal;
    if (isFrozen(w.embd)) o.embeddingFrozen(x0, w.embd, tokens, n);
    else embedding(x0, w.embd, tokens, n, s.dim); // x [n, dim]
    for (let l = 0; l < s.nLayers; l++) {
      const xOut = l + 1 < s.nLayers ? this.xIns[l + 1] : this.xFinal;
      this.layerForward(lin, w, l, actsOf(l), this.xIns[l], xOut);
    }
    o.rmsNorm(this.xnF, this.xFinal, w.outputNorm, n, s.dim, s.normEps); // xnF [n, dim]
    lin.forward("output.weight", this.logits, this.xnF, w.output, n, s.dim, s.vocabSize); // logits [n, vocab]
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
    const gm = (v: Weight<A> | undefined) => v as A | undefined;
    const ns = this.normScratch;
    const dx = sc.dx; // [n, dim] gradient of the residual stream
    lin.backward(
      "output.weight",
      gm(g?.output),
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
      const a = actsOf(l);
      // with checkpointing the shared set still holds the last layer; earlier ones are recomputed
      if (this.checkpointLayers && l < s.nLayers - 1) this.layerForward(lin, w, l, a, this.xIns[l], null);
      const xIn = this.xIns[l];
      const L = w.layers[l];
      const G = g?.layers[l];
      const p = `blk.${l}.`;
      // feed-forward block: dx flows to xMid unchanged plus through the FFN
      lin.backward(`${p}ffn_down.weight`, gm(G?.wDown), sc.dh, dx, a.h, L.wDown, n, s.ffnDim, s.dim, false);
      o.swigluBackward(sc.dgate, sc.dup, sc.dh, a.gate, a.up, n * s.ffnDim);
      lin.backward(
        `${p}ffn_gate.weight`,
        gm(G?.wGate),
        sc.dxn,
        sc.dgate,
        a.xn2,
        L.wGate,
        n,
        s.dim,
        s.ffnDim,
        false,
      );
      lin.backward(`${p}ffn_up.weight`, gm(G?.wUp), sc.dxn, sc.dup, a.xn2, L.wUp, n, s.dim, s.ffnDim, true);
      o.rmsNormBackward(dx, G?.ffnNorm ?? ns, sc.dxn, a.xMid, L.ffnNorm, n, s.dim, s.normEps);
      // attention block
      lin.backward(`${p}attn_output.weight`, gm(G?.wo), sc.datt, dx, a.att, L.wo, n, qDim, s.dim, false);
      o.attentionBackward(sc.dq, sc.dk, sc.dv, a.q, a.k, a.v, a.probs, sc.datt, this.attn);
      o.rope(sc.dq, n, this.seq, s.nHeads, hd, s.ropeFreqBase, -1);
      o.rope(sc.dk, n, this.seq, s.nKvHeads, hd, s.ropeFreqBase, -1);
      lin.backward(`${p}attn_q.weight`, gm(G?.wq), sc.dxn, sc.dq, a.xn1, L.wq, n, s.dim, qDim, false);
      lin.backward(`${p}attn_k.weight`, gm(G?.wk), sc.dxn, sc.dk, a.xn1, L.wk, n, s.dim, kvDim, true);
      lin.backward(`${p}attn_v.weight`, gm(G?.wv), sc.dxn, sc.dv, a.xn1, L.wv, n, s.dim, kvDim, true);
      o.rmsNormBackward(dx, G?.attnNorm ?? ns, sc.dxn, xIn, L.attnNorm, n, s.dim, s.normEps);
    }
    if (g) o.embeddingBackward(gm(g.embd) as A, dx, tokens, n, s.dim);
    return loss;
  }
}
