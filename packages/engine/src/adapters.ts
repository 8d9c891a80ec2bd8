/**
 * LoRA adapters applied at inference without merging: a `Backend` wrapper whose `matmul` adds
 * `(alpha/r)·(x·Aᵀ)·Bᵀ` beside the frozen product of every adapted weight. The base weights stay
 * as loaded (mapped, repacked, quantized); the adapter products run through the same backend on
 * small F32 matrices.
 */
import { type Backend, GGMLType, RyzansteinError, Tensor } from "@ryzanstein/core-tensor";
import type { ModelWeights } from "./weights.js";

/** One adapted weight: `A [rank, inDim]` and `B [outDim, rank]`, row-major F32. */
export interface LinearAdapter {
  /** Down projection. */
  a: Float32Array;
  /** Up projection. */
  b: Float32Array;
  /** Input width of the base weight. */
  inDim: number;
  /** Output width of the base weight. */
  outDim: number;
}

/** A LoRA adapter as plain data (what `@ryzanstein/lora` loads from GGUF or PEFT). */
export interface AdapterWeights {
  /** Rank r. */
  rank: number;
  /** Alpha (the update is `(alpha/rank)·B·A`). */
  alpha: number;
  /** By base weight GGUF name (`blk.0.attn_q.weight`, `output.weight`, ...). */
  tensors: Map<string, LinearAdapter>;
}

interface Bound {
  a: Tensor;
  b: Tensor;
  rank: number;
}

/** The weights of a model by GGUF name (the matrices an adapter may target). */
function namedMatrices(w: ModelWeights): Map<string, Tensor> {
  const out = new Map<string, Tensor>([["output.weight", w.output]]);
  w.layers.forEach((l, i) => {
    const p = `blk.${i}.`;
    for (const [n, t] of [
      ["attn_q", l.wq],
      ["attn_k", l.wk],
      ["attn_v", l.wv],
      ["attn_output", l.wo],
      ["ffn_gate", l.wGate],
      ["ffn_up", l.wUp],
      ["ffn_down", l.wDown],
    ] as const)
      out.set(`${p}${n}.weight`, t);
  });
  return out;
}

/**
 * Wraps `inner` so that every `matmul` on a weight of `adapter` also adds the adapter's term.
 *
 * @throws RyzansteinError `SHAPE_MISMATCH` when the adapter names a weight the model lacks or
 *   its shapes differ (an adapter for another base).
 */
export function withAdapter(inner: Backend, weights: ModelWeights, adapter: AdapterWeights): Backend {
  const byName = namedMatrices(weights);
  const bound = new Map<Tensor, Bound>();
  const r = adapter.rank;
  if (!Number.isInteger(r) || r < 1)
    throw new RyzansteinError("INVALID_ARGUMENT", `adapter rank ${r} is invalid`);
  for (const [name, t] of adapter.tensors) {
    const w = byName.get(name);
    if (
      !w ||
      w.shape[0] !== t.outDim ||
      w.shape[1] !== t.inDim ||
      t.a.length !== r * t.inDim ||
      t.b.length !== t.outDim * r
    ) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `the adapter does not fit this model: ${name} is ${w ? w.shape.join("×") : "missing"}, the adapter expects ${t.outDim}×${t.inDim}`,
      );
    }
    // scale folded into B once: y += (x·Aᵀ)·(s·B)ᵀ
    const s = adapter.alpha / r;
    bound.set(w, {
      a: Tensor.fromF32([r, t.inDim], t.a, GGMLType.F32),
      b: Tensor.fromF32(
        [t.outDim, r],
        Float32Array.from(t.b, (v) => v * s),
        GGMLType.F32,
      ),
      rank: r,
    });
  }
  let tmp = new Float32Array(0);
  let up = new Float32Array(0);
  const matmul = (y: Float32Array, w: Tensor, x: Float32Array, n: number): void => {
    inner.matmul(y, w, x, n);
    const ad = bound.get(w);
    if (!ad) return;
    const out = w.shape[0];
    if (tmp.length < n * ad.rank) tmp = new Float32Array(n * ad.rank);
    if (up.length < n * out) up = new Float32Array(n * out);
    inner.matmul(tmp, ad.a, x, n); // t [n, r]
    inner.matmul(up, ad.b, tmp, n); // u [n, out]
    for (let i = 0; i < n * out; i++) y[i] += up[i];
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === "matmul") return matmul;
      // The fused matmuls over pre-converted activations would skip the adapter terms.
      if (prop === "activationLayout" || prop === "matmulQuantized") return undefined;
      if (prop === "name") return `${target.name}+lora`;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
