import { describe, expect, it } from "vitest";
import { Sampler, topLogprobs } from "../src/index.js";

const logits = Float32Array.from([1, 3, 2, 0.5, 2.9]);

describe("Sampler", () => {
  it("greedy picks the argmax", () => {
    expect(new Sampler({ temperature: 0 }).sample(logits)).toBe(1);
  });

  it("says when it is plain greedy (argmax, no penalties), and greedy skips NaN and keeps the first tie", () => {
    expect(new Sampler({ temperature: 0 }).greedy).toBe(true);
    expect(new Sampler({ temperature: 0, repeatPenalty: 1.1 }).greedy).toBe(false);
    expect(new Sampler({ temperature: 0.7 }).greedy).toBe(false);
    expect(new Sampler({ temperature: 0 }).sample(Float32Array.from([Number.NaN, 1, 4, 4]))).toBe(2);
  });

  it("top-k 1 is greedy at any temperature", () => {
    const s = new Sampler({ temperature: 5, topK: 1, seed: 3 });
    for (let i = 0; i < 20; i++) expect(s.sample(logits)).toBe(1);
  });

  it("is deterministic for a seed and varies across seeds", () => {
    const run = (seed: number) => {
      const s = new Sampler({ temperature: 1.5, topK: 0, topP: 1, minP: 0, seed });
      return Array.from({ length: 50 }, () => s.sample(logits));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
  });

  it("samples in proportion to softmax(logits / T)", () => {
    const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed: 42 });
    const counts = new Array(5).fill(0);
    const n = 20000;
    for (let i = 0; i < n; i++) counts[s.sample(logits)]++;
    const z = Array.from(logits).reduce((a, v) => a + Math.exp(v), 0);
    for (let i = 0; i < 5; i++) expect(counts[i] / n).toBeCloseTo(Math.exp(logits[i]) / z, 1);
  });

  it("top-p keeps the smallest nucleus and min-p drops unlikely tokens", () => {
    const tp = new Sampler({ temperature: 1, topK: 0, topP: 0.5, minP: 0, seed: 1 });
    for (let i = 0; i < 200; i++) expect([1, 4]).toContain(tp.sample(logits));
    const mp = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0.5, seed: 1 });
    for (let i = 0; i < 200; i++) expect([1, 4, 2]).toContain(mp.sample(logits));
  });

  it("penalties push seen tokens down", () => {
    const s = new Sampler({ temperature: 0, presencePenalty: 0.5 });
    s.accept(1);
    expect(s.sample(logits)).toBe(4); // 3 - 0.5 < 2.9
    const r = new Sampler({ temperature: 0, repeatPenalty: 2 });
    r.accept(1);
    expect(r.sample(logits)).toBe(4);
    const f = new Sampler({ temperature: 0, frequencyPenalty: 0.05 });
    f.accept(1);
    f.accept(1);
    f.accept(1);
    expect(f.sample(logits)).toBe(4); // 3 - 0.15 < 2.9
  });

  it("rejects bad settings", () => {
    expect(() => new Sampler({ topP: 0 })).toThrow(/topP/);
    expect(() => new Sampler({ topK: -1 })).toThrow(/topK/);
    expect(() => new Sampler({ temperature: Number.NaN })).toThrow(/temperature/);
  });

  it("topLogprobs gives sorted natural-log probabilities", () => {
    const { chosen, top } = topLogprobs(logits, 3, 4);
    expect(top.map((t) => t.token)).toEqual([1, 4, 2]);
    const z = Math.log(Array.from(logits).reduce((a, v) => a + Math.exp(v), 0));
    expect(top[0].logprob).toBeCloseTo(3 - z, 6);
    expect(chosen).toBeCloseTo(2.9 - z, 6);
  });
});
