import { modelPath } from "@ryzanstein/default-model";
import {
  BatchRunner,
  type KVCacheType,
  Model,
  openModelFile,
  PagedKvCache,
  readLlamaWeights,
  readModelConfig,
} from "@ryzanstein/engine";
import { NativeBackend } from "@ryzanstein/kernels-native";
import { greedyBatched } from "@ryzanstein/test-support";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";
import { describe, expect, it } from "vitest";

/**
 * Greedy decoding of every prompt in one BatchRunner with a `kvType` cache (`greedyBatched`; with
 * `forced`, teacher forcing along those tokens). Blocks interleaved, as the shared pool hands them out.
 */
function greedy(model: Model, kvType: KVCacheType, prompts: number[][], steps: number, forced?: number[][]) {
  const block = 16;
  const maxCtx = 128;
  const perSeq = maxCtx / block;
  const cache = new PagedKvCache(model, prompts.length * perSeq, block, kvType);
  const runner = new BatchRunner(model, cache, 256, prompts.length, maxCtx);
  const tables = prompts.map((_, s) => Array.from({ length: perSeq }, (_, j) => s + j * prompts.length));
  return greedyBatched(
    (seqs) => runner.forward(seqs),
    model.config.vocabSize,
    prompts,
    tables,
    steps,
    forced,
  );
}

// The default model (a trained Llama, headDim 64): the q8_0 cache against the F16 one on natural
// prompts, scored along the F16 greedy path.
describe("q8_0 vs f16 KV cache on the default model", () => {
  it("agrees with F16 on the greedy token, with chosen-token log-probabilities within 0.05", () => {
    const gguf = openModelFile(modelPath);
    const config = readModelConfig(gguf);
    const model = new Model(config, readLlamaWeights(gguf, config), new NativeBackend({ threads: 2 }));
    const tok = createTokenizerFromGGUF(gguf.metadata);
    const prompts = [
      "In the beginning God created",
      "And the LORD spake unto Moses, saying,",
      "Blessed are the poor in spirit:",
      "And it came to pass, when",
    ].map((text) => tok.encode(text, { addBos: tok.addBos }));
    const steps = 48;
    const f16 = greedy(model, "f16", prompts, steps);
    const q8Forced = greedy(model, "q8_0", prompts, steps, f16.tokens);
    let maxDelta = 0;
    let sumDelta = 0;
    for (let s = 0; s < prompts.length; s++)
      for (let i = 0; i < steps; i++) {
        const d = Math.abs(q8Forced.logps[s][i] - f16.logps[s][i]);
        maxDelta = Math.max(maxDelta, d);
        sumDelta += d;
      }
    // Top-1 agreement along the F16 path (as llama.cpp's KL-divergence report): a near-tie may flip.
    const agree = prompts.map((_, s) => q8Forced.tokens[s].filter((t, i) => t === f16.tokens[s][i]).length);
    const total = agree.reduce((a, b) => a + b, 0);
    console.log(
      `q8_0 vs f16 KV cache, default model, ${prompts.length} prompts x ${steps} greedy steps: |Δ log p| of the chosen ` +
        `tokens max ${maxDelta.toFixed(4)}, mean ${(sumDelta / (prompts.length * steps)).toFixed(5)}; top-1 agreement ${total} of ${prompts.length * steps} (${agree.join(", ")})`,
    );
    expect(maxDelta).toBeGreaterThan(0); // the cache is quantized
    expect(maxDelta).toBeLessThan(0.05);
    expect(total).toBeGreaterThanOrEqual(0.95 * prompts.length * steps);
    model.backend.dispose?.();
  });
});
