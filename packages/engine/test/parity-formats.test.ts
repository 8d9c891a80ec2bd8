// The block formats beyond Q8_0/Q4_0 (Q4_1, Q5_0, K-quants, ternary): a random-weight Llama written
// by our writer in each format must give llama.cpp's greedy tokens and top-5 log-probabilities, and
// our native engine must match our reference backend. Rows are 256 or 512 wide (K-quant blocks).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ComputeFormat, GGMLType, typeName } from "@ryzanstein/core-tensor";
import { disposeLlamaCpp, llamaCppGreedy, writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../src/index.js";
import { logSoftmax, PARITY_ISA, relL2 } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "rz-parity-fmt-"));
afterAll(async () => {
  await disposeLlamaCpp();
  rmSync(dir, { recursive: true, force: true });
});

// Every format here quantizes activations (Q8_1, Q8_0 or Q8_K) in both engines, where a last-bit
// difference upstream can flip a rounding and move the logits by tenths. Our kernels sum in
// llama.cpp's float order (its AVX2 build), so the engines agree to float rounding: the issue's
// 2e-2 holds (docs/testing.md); a layout or order error moves log-probabilities by tenths or units.
const PEER_TOL = 2e-2;
const PEER_MEAN_TOL = 5e-3;
const NEAR_TIE = 0.05;
const FORMATS: ComputeFormat[] = [
  GGMLType.Q4_1,
  GGMLType.Q5_0,
  GGMLType.Q2_K,
  GGMLType.Q3_K,
  GGMLType.Q4_K,
  GGMLType.Q5_K,
  GGMLType.Q6_K,
  GGMLType.TQ1_0,
  GGMLType.TQ2_0,
];

const prompt = [1, 300, 400, 500, 600, 700];
const STEPS = 16;
const VOCAB = 1024;

describe("random-weight Llama (GQA, 3 layers, d 256) in every new format: native vs reference vs llama.cpp", () => {
  for (const type of FORMATS) {
    it(typeName(type), async () => {
      const path = join(dir, `rand-${typeName(type)}.gguf`);
      writeRandomLlamaGGUF(path, {
        nLayers: 3,
        dim: 256,
        nHeads: 4,
        nKvHeads: 2,
        ffnDim: 512,
        vocabSize: VOCAB,
        type,
        seed: 5,
        std: 0.06,
      });
      const trace = await llamaCppGreedy(path, prompt, STEPS, { topK: 5, threads: 1 });
      const sequence = [...prompt, ...trace.steps.map((s) => s.token)];

      // Default load options: ternary matrices go through the lookup-table copy made at load,
      // whose float order is llama.cpp's (kernels-native tests: bit for bit with the file-layout dot).
      const native = await loadModel(path, { threads: 2, isa: PARITY_ISA, attentionNumerics: "llama.cpp" });
      const native32 = await loadModel(path, { threads: 2, isa: PARITY_ISA, kvCache: "f32" });
      const reference = await loadModel(path, { backend: "reference", worker: false, kvCache: "f32" });
      const ours = await native.logits(sequence.slice(0, -1));
      const ours32 = await native32.logits(sequence.slice(0, -1));
      const exact = await reference.logits(sequence.slice(0, -1));
      await native.dispose();
      await native32.dispose();
      await reference.dispose();
      // Native vs reference, row by row: equal up to float summation order (~1e-7), except where one
      // activation lands on a Q8 rounding boundary in one engine and not the other: such a flip
      // moves that row and, through the KV cache, every later one by up to ~2e-2 on these models
      // (which ISA flips where depends on summation order). Kernel-level agreement within 2e-4 is
      // tested in kernels-native; here a layout or dispatch error would show as O(1).
      const rowErr = Array.from({ length: sequence.length - 1 }, (_, t) =>
        relL2(ours32.subarray(t * VOCAB, (t + 1) * VOCAB), exact.subarray(t * VOCAB, (t + 1) * VOCAB)),
      );
      const err = [...rowErr].sort((a, b) => a - b)[rowErr.length >> 1];

      let compared = 0;
      let maxDiff = 0;
      let sumDiff = 0;
      let nDiff = 0;
      for (let s = 0; s < STEPS; s++) {
        const step = trace.steps[s];
        if (step.top2Gap < NEAR_TIE) continue; // near ties: skipped, as the issue allows
        compared++;
        const row = logSoftmax(ours.subarray((prompt.length - 1 + s) * VOCAB, (prompt.length + s) * VOCAB));
        let best = 0;
        for (let i = 1; i < VOCAB; i++) if (row[i] > row[best]) best = i;
        // Same greedy token wherever llama.cpp's margin exceeds what the engines may differ by.
        if (step.top2Gap >= PEER_TOL) expect(best, `step ${s}`).toBe(step.token);
        for (const t of step.top) {
          const d = Math.abs(row[t.token] - t.logprob);
          maxDiff = Math.max(maxDiff, d);
          sumDiff += d;
          nDiff++;
        }
      }
      const meanDiff = sumDiff / Math.max(1, nDiff);
      console.log(
        `${typeName(type)}: native vs reference rel L2 median ${err.toExponential(2)} max ${Math.max(...rowErr).toExponential(2)}; vs llama.cpp |Δlogprob| max ${maxDiff.toExponential(2)} mean ${meanDiff.toExponential(2)} over ${compared}/${STEPS} steps`,
      );
      expect(Math.max(...rowErr)).toBeLessThan(5e-2);
      expect(compared).toBeGreaterThanOrEqual(10);
      expect(maxDiff).toBeLessThan(PEER_TOL);
      expect(meanDiff).toBeLessThan(PEER_MEAN_TOL);
    }, 60_000);
  }
});
