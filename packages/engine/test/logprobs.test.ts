import { disposeLlamaCpp, llamaCppGreedy } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { type GeneratedToken, loadModel } from "../src/index.js";
import { storiesPath } from "./helpers.js";

afterAll(() => disposeLlamaCpp());

describe("stories260K log-probabilities", () => {
  it("32 greedy steps agree with llama.cpp (2e-2) and with the exact reference (1e-3)", async () => {
    const model = await loadModel(storiesPath, { threads: 2 });
    const gen = model.generate("Once upon a time", { maxTokens: 32, temperature: 0, topLogprobs: 10 });
    const steps: GeneratedToken[] = [];
    for await (const t of gen) steps.push(t);
    await model.dispose();
    expect(steps.length).toBe(32);

    const trace = await llamaCppGreedy(storiesPath, gen.promptTokens, 32, { topK: 10, threads: 1 });
    const reference = await loadModel(storiesPath, { backend: "reference", worker: false });
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
