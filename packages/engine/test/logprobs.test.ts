import { disposeLlamaCpp, llamaCppGreedy } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { type GeneratedToken, loadModel } from "../src/index.js";
import { storiesPath } from "./helpers.js";

afterAll(() => disposeLlamaCpp());

describe("stories260K log-probabilities", () => {
  // With the default F16 KV cache against llama.cpp (which keeps F16 K/V too); with an F32 cache
  // against the exact reference (F16 rounding of K/V is discontinuous, so two F16 caches built from
  // slightly different floats would differ by more than the summation order).
  it("32 greedy steps agree with llama.cpp (2e-2) and with the exact reference (1e-3)", async () => {
    const run = async (kvCache: "f16" | "f32") => {
      const model = await loadModel(storiesPath, { threads: 2, kvCache });
      const gen = model.generate("Once upon a time", { maxTokens: 32, temperature: 0, topLogprobs: 10 });
      const out: GeneratedToken[] = [];
      for await (const t of gen) out.push(t);
      await model.dispose();
      return { gen, steps: out };
    };
    const { gen, steps } = await run("f16");
    const { steps: steps32 } = await run("f32");
    expect(steps.length).toBe(32);

    const trace = await llamaCppGreedy(storiesPath, gen.promptTokens, 32, { topK: 10, threads: 1 });
    const reference = await loadModel(storiesPath, { backend: "reference", worker: false, kvCache: "f32" });
    const exact = await reference.generate(gen.promptTokens, {
      maxTokens: 32,
      temperature: 0,
      topLogprobs: 10,
    });
    const exactSteps: GeneratedToken[] = [];
    for await (const t of exact) exactSteps.push(t);
    await reference.dispose();

    let vsLlama = 0;
    let vsExact = 0;
    steps.forEach((ours, s) => {
      expect(ours.token).toBe(trace.steps[s].token);
      expect(exactSteps[s].token).toBe(ours.token);
      const theirs = new Map(trace.steps[s].top.map((t) => [t.token, t.logprob]));
      const exactTop = new Map(exactSteps[s].top?.map((t) => [t.token, t.logprob]));
      for (const t of ours.top?.slice(0, 5) ?? []) {
        const l = theirs.get(t.token);
        expect(l, `step ${s}: token ${t.token} missing from llama.cpp's top 10`).toBeDefined();
        vsLlama = Math.max(vsLlama, Math.abs(t.logprob - (l as number)));
      }
      expect(steps32[s].token).toBe(ours.token);
      for (const t of steps32[s].top?.slice(0, 5) ?? []) {
        vsExact = Math.max(vsExact, Math.abs(t.logprob - (exactTop.get(t.token) as number)));
      }
    });
    console.log(
      `stories260K top-5 logprobs: max |Δ| vs llama.cpp ${vsLlama.toExponential(2)}, vs reference ${vsExact.toExponential(2)}`,
    );
    expect(vsLlama).toBeLessThan(2e-2);
    expect(vsExact).toBeLessThan(1e-3);
  });
});
