// One QLoRA training setup for the benchmark: the base loaded in its format, rank-16 adapters,
// a graph for one window of `seq` tokens. Kept apart from qlora.ts so the measurement loop is short.
import type { Isa } from "@ryzanstein/kernels-native";
import { nativeOps, TrainGraph } from "@ryzanstein/training";
import { LoraAdapters, loadBase } from "../src/index.js";

/** A ready-to-step fine-tuning setup over random tokens. */
export function finetuneSession(
  path: string,
  o: { threads: number; seq: number; rank: number; checkpointLayers: boolean; isa?: Isa },
) {
  const base = loadBase(path);
  const ops = nativeOps({ threads: o.threads, isa: o.isa });
  const adapters = new LoraAdapters(
    base.shape,
    {
      rank: o.rank,
      alpha: 2 * o.rank,
      targetModules: ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"],
    },
    ops,
    o.seq,
  );
  const graph = new TrainGraph(base.shape, 1, o.seq, ops, adapters, { checkpointLayers: o.checkpointLayers });
  const V = base.shape.vocabSize;
  let k = 1;
  const tokens = Int32Array.from({ length: o.seq }, () => {
    k = (k * 48271) % 2147483647; // Lehmer generator: fixed pseudo-random tokens
    return k % V;
  });
  const targets = Int32Array.from({ length: o.seq }, (_, i) => tokens[(i + 1) % o.seq]);
  return {
    adapters,
    weightBytes: base.weightBytes,
    activationBytes: graph.activationBytes,
    /** One forward + backward; returns the mean loss. */
    step(): number {
      adapters.grads.fill(0);
      return graph.step(base.weights, tokens, targets, undefined, 1 / o.seq, true) / o.seq;
    },
    dispose: () => ops.kernels.dispose(),
  };
}
