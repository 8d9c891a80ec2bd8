import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  disposeLlamaCpp,
  findRepoRoot,
  fixturesDir,
  llamaCppDetokenize,
  llamaCppGreedy,
  llamaCppLoadCheck,
  llamaCppTokenize,
} from "../src/llamacpp.js";

const MODEL = resolve(fixturesDir(), "models/stories260K.gguf");
const GOLDEN = resolve(fixturesDir(), "models/stories260K.golden.greedy-t0-n64-prompt-Once_upon_a_time.txt");
const PROMPT = "Once upon a time";
const PROMPT_TOKENS = [1, 403, 407, 261, 378];

afterAll(async () => {
  await disposeLlamaCpp();
});

describe("fixture paths", () => {
  it("finds the repo root and the shared fixtures", () => {
    expect(readFileSync(resolve(findRepoRoot(), "nx.json"), "utf8").length).toBeGreaterThan(0);
    expect(fixturesDir()).toBe(resolve(findRepoRoot(), "../shared/fixtures"));
  });
});

describe("llama.cpp peer on stories260K", () => {
  it("loads the model and rejects a missing file", async () => {
    expect(await llamaCppLoadCheck(MODEL)).toEqual({ ok: true });
    const missing = await llamaCppLoadCheck(resolve(fixturesDir(), "models/does-not-exist.gguf"));
    expect(missing).toMatchObject({ ok: false, error: expect.stringContaining("not found") });
    const notGguf = await llamaCppLoadCheck(GOLDEN);
    expect(notGguf).toMatchObject({ ok: false, error: expect.stringContaining("GGUF magic") });
    // A vocabulary-only GGUF parses but has no weights; llama.cpp's reason is carried in the error.
    const vocabOnly = await llamaCppLoadCheck(resolve(fixturesDir(), "tokenizers/ggml-vocab-llama-spm.gguf"));
    expect(vocabOnly).toMatchObject({ ok: false, error: expect.stringContaining("token_embd.weight") });
  });

  it("tokenizes the golden prompt with BOS", async () => {
    expect(await llamaCppTokenize(MODEL, PROMPT, { addBos: true })).toEqual(PROMPT_TOKENS);
    expect(await llamaCppTokenize(MODEL, PROMPT)).toEqual(PROMPT_TOKENS.slice(1));
  });

  it("reproduces the llama2.c greedy golden output with sane log-probabilities", async () => {
    const golden = readFileSync(GOLDEN, "utf8");
    const trace = await llamaCppGreedy(MODEL, PROMPT_TOKENS, 60);
    expect(trace.steps).toHaveLength(60);
    const generated = trace.steps.map((s) => s.token);

    // Full sequence without BOS; SentencePiece keeps the space prefix of the first word ("▁Once").
    const full = await llamaCppDetokenize(MODEL, [...PROMPT_TOKENS, ...generated]);
    expect(full.replace(/^ /, "")).toBe(golden);
    // The same text as prompt + continuation.
    const continuation = await llamaCppDetokenize(MODEL, generated, { lastTokens: PROMPT_TOKENS });
    expect(PROMPT + continuation).toBe(golden);

    for (const step of trace.steps) {
      expect(step.top).toHaveLength(10);
      expect(step.token).toBe(step.top[0].token);
      let mass = 0;
      for (let i = 0; i < step.top.length; i++) {
        expect(step.top[i].logprob).toBeLessThanOrEqual(0);
        if (i > 0) expect(step.top[i].logprob).toBeLessThanOrEqual(step.top[i - 1].logprob);
        mass += Math.exp(step.top[i].logprob);
      }
      expect(mass).toBeLessThanOrEqual(1 + 1e-6);
      expect(step.top2Gap).toBeCloseTo(step.top[0].logprob - step.top[1].logprob, 12);
      expect(step.top2Gap).toBeGreaterThanOrEqual(0);
    }

    // Pinned values (llama.cpp b-prebuilt of node-llama-cpp 3.21.1, CPU): first step of the golden prompt.
    expect(trace.steps[0].token).toBe(432);
    expect(trace.steps[0].top[0].logprob).toBeCloseTo(-0.03178, 3);
    expect(trace.steps[0].top[1].token).toBe(383);
    expect(trace.steps[0].top[1].logprob).toBeCloseTo(-3.5473, 3);
  });

  it("respects topK and is deterministic across calls and thread counts", async () => {
    const a = await llamaCppGreedy(MODEL, PROMPT_TOKENS, 8, { topK: 3 });
    const b = await llamaCppGreedy(MODEL, PROMPT_TOKENS, 8, { topK: 3, threads: 1 });
    expect(a.steps.every((s) => s.top.length === 3)).toBe(true);
    expect(b.steps.map((s) => s.token)).toEqual(a.steps.map((s) => s.token));
    for (let i = 0; i < a.steps.length; i++) {
      expect(Math.abs(b.steps[i].top[0].logprob - a.steps[i].top[0].logprob)).toBeLessThan(1e-4);
    }
  });

  it("generates past EOS for exactly the requested number of steps", async () => {
    // A prompt ending in EOS (id 2) still yields every requested step.
    const trace = await llamaCppGreedy(MODEL, [1, 2], 5, { topK: 1 });
    expect(trace.steps).toHaveLength(5);
  });

  it("rejects a context that cannot hold the prompt and the steps", async () => {
    await expect(llamaCppGreedy(MODEL, PROMPT_TOKENS, 300, { contextSize: 256 })).rejects.toThrow(RangeError);
    await expect(llamaCppGreedy(MODEL, [1, 512], 1)).rejects.toThrow(RangeError);
  });

  it("gives identical traces on repeated runs", async () => {
    const a = await llamaCppGreedy(MODEL, PROMPT_TOKENS, 32);
    const b = await llamaCppGreedy(MODEL, PROMPT_TOKENS, 32);
    expect(b).toEqual(a);
  });
});
