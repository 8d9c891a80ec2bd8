import { isRyzansteinError } from "@ryzanstein/core-tensor";
import { describe, expect, it } from "vitest";
import { negativeLogLikelihood, perplexity } from "../src/index.js";

describe("perplexity (llama-perplexity's method)", () => {
  it("matches a hand-computed case: windows of ctx, second half scored, BOS over each window's first token", () => {
    // vocab 2; every position predicts token 1 with p = 3/4 (logits [0, ln 3]).
    const seen: number[][] = [];
    const logits = (t: number[]) => {
      seen.push([...t]);
      const out = new Float32Array(t.length * 2);
      for (let i = 0; i < t.length; i++) out[i * 2 + 1] = Math.log(3);
      return out;
    };
    const tokens = [1, 0, 1, 1, 1, 0, 1, 0, 1]; // 9 tokens, ctx 4: 2 windows, the 9th is unused
    const r = perplexity(logits, tokens, { ctx: 4, vocabSize: 2, bosId: 7 });
    // Window 0 scores position 2 → target tokens[3] = 1 (p 3/4); window 1 position 2 → tokens[7] = 0 (p 1/4).
    expect(r.chunks).toBe(2);
    expect(r.tokensScored).toBe(2);
    expect(r.meanNll).toBeCloseTo((Math.log(4 / 3) + Math.log(4)) / 2, 6);
    expect(r.perplexity).toBeCloseTo(Math.sqrt(16 / 3), 5);
    expect(seen).toEqual([
      [7, 0, 1, 1],
      [7, 0, 1, 0],
    ]);
  });

  it("computes −log softmax stably", () => {
    expect(negativeLogLikelihood(Float32Array.of(1000, 1000), 0)).toBeCloseTo(Math.log(2), 10);
  });

  it("needs 2·ctx tokens", () => {
    const logits = (t: number[]) => new Float32Array(t.length * 2);
    try {
      perplexity(logits, [1, 2, 3, 4, 5, 6, 7], { ctx: 4, vocabSize: 2, bosId: null });
      expect.unreachable();
    } catch (e) {
      expect(isRyzansteinError(e, "INSUFFICIENT_DATA")).toBe(true);
      expect((e as Error).message).toMatch(/7 tokens.*at least 8/);
    }
  });
});
