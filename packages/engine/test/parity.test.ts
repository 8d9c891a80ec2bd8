import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGMLType } from "@ryzanstein/core-tensor";
import { disposeLlamaCpp, llamaCppGreedy, writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../src/index.js";
import { logSoftmax, PARITY_ISA, relL2 } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "rz-parity-"));
afterAll(async () => {
  await disposeLlamaCpp();
  rmSync(dir, { recursive: true, force: true });
});

// `tol`: native vs reference logits (relative L2). `peerTol` / `peerMeanTol`: max and mean
// |Δ log-probability| of the top 5 against llama.cpp. Our side runs with llama.cpp's attention
// numerics (F16 accumulation over the F16 cache), so with Q8_0/Q4_0 weights, where both engines
// quantize activations to Q8_0 the same way, the two agree to float rounding (measured ~5e-6).
// Float weights keep differences of summation order in the matmuls (measured ~5e-3).
const formats = [
  { name: "F32", type: GGMLType.F32, tol: 1e-4, peerTol: 2e-2, peerMeanTol: 5e-3 },
  { name: "F32 tied output", type: GGMLType.F32, tol: 1e-4, peerTol: 2e-2, peerMeanTol: 5e-3, tied: true },
  { name: "F16", type: GGMLType.F16, tol: 1e-3, peerTol: 2e-2, peerMeanTol: 5e-3 },
  { name: "Q8_0", type: GGMLType.Q8_0, tol: 1e-3, peerTol: 2e-2, peerMeanTol: 1e-4 },
  { name: "Q4_0", type: GGMLType.Q4_0, tol: 1e-3, peerTol: 2e-2, peerMeanTol: 1e-4 },
] as const;

const prompt = [1, 300, 400, 500, 600, 700];
const STEPS = 16;

describe("random-weight Llama (GQA, 4 layers, vocab 1024): native vs reference vs llama.cpp", () => {
  for (const f of formats) {
    it(`${f.name}`, async () => {
      const path = join(dir, `rand-${f.name.replace(/ /g, "-")}.gguf`);
      const tiedOutput = "tied" in f && f.tied;
      writeRandomLlamaGGUF(path, {
        nLayers: 4,
        dim: 128,
        nHeads: 4,
        nKvHeads: 2,
        ffnDim: 256,
        vocabSize: 1024,
        type: f.type,
        seed: 11,
        tiedOutput,
      });

      // llama.cpp: greedy trace with top-5 log-probabilities.
      const trace = await llamaCppGreedy(path, prompt, STEPS, { topK: 5, threads: 1 });
      const sequence = [...prompt, ...trace.steps.map((s) => s.token)];

      // Our engine on the same token sequence (teacher forcing): native with the F16 KV cache and
      // llama.cpp's attention numerics against llama.cpp; native and reference with F32 caches
      // against each other (two F16 caches built from slightly different floats round
      // differently, see docs/testing.md).
      const native = await loadModel(path, { threads: 2, isa: PARITY_ISA, attentionNumerics: "llama.cpp" });
      const native32 = await loadModel(path, { threads: 2, isa: PARITY_ISA, kvCache: "f32" });
      const reference = await loadModel(path, { backend: "reference", worker: false, kvCache: "f32" });
      const ours = await native.logits(sequence.slice(0, -1));
      const ours32 = await native32.logits(sequence.slice(0, -1));
      const exact = await reference.logits(sequence.slice(0, -1));
      await native.dispose();
      await native32.dispose();
      await reference.dispose();

      const err = relL2(ours32, exact);
      expect(err).toBeLessThan(f.tol);

      const vocab = 1024;
      let compared = 0;
      let maxDiff = 0;
      let sumDiff = 0;
      let nDiff = 0;
      for (let s = 0; s < STEPS; s++) {
        const step = trace.steps[s];
        const row = logSoftmax(ours.subarray((prompt.length - 1 + s) * vocab, (prompt.length + s) * vocab));
        // Near ties (within what the two engines may disagree by) are skipped.
        if (step.top2Gap < Math.max(0.05, f.peerTol)) continue;
        compared++;
        let best = 0;
        for (let i = 1; i < vocab; i++) if (row[i] > row[best]) best = i;
        expect(best, `step ${s}`).toBe(step.token);
        for (const t of step.top) {
          const d = Math.abs(row[t.token] - t.logprob);
          maxDiff = Math.max(maxDiff, d);
          sumDiff += d;
          nDiff++;
          expect(d, `step ${s} token ${t.token}`).toBeLessThan(f.peerTol);
        }
      }
      expect(compared).toBeGreaterThanOrEqual(6);
      const meanDiff = sumDiff / nDiff;
      console.log(
        `${f.name}: native vs reference rel L2 ${err.toExponential(2)}; vs llama.cpp |Δlogprob| max ${maxDiff.toExponential(2)} mean ${meanDiff.toExponential(2)} over ${compared} steps`,
      );
      expect(meanDiff).toBeLessThan(f.peerMeanTol);
    });
  }
});
