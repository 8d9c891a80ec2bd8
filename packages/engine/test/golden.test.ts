import { afterAll, describe, expect, it } from "vitest";
import { generateTokens, type LanguageModel, loadModel, ModelSession, openModelFile } from "../src/index.js";
import { goldenText, storiesPath } from "./helpers.js";

describe("stories260K golden output (llama2.c reference)", () => {
  const models: LanguageModel[] = [];
  afterAll(async () => {
    for (const m of models) await m.dispose();
  });

  for (const backend of ["native", "reference"] as const) {
    it(`${backend}: greedy "Once upon a time" + 60 tokens equals the golden text`, async () => {
      const model = await loadModel(storiesPath, { backend, worker: backend === "native" });
      models.push(model);
      expect(model.tokenize("Once upon a time")).toEqual([1, 403, 407, 261, 378]);
      const { text, tokens, result } = await model
        .generate("Once upon a time", { maxTokens: 60, temperature: 0 })
        .text();
      expect(tokens.length).toBe(60);
      expect(result.finishReason).toBe("length");
      expect(`Once upon a time${text}`).toBe(goldenText);
    });
  }

  it("reuses the cached prefix and stops on stop strings, EOS and abort", async () => {
    const model = await loadModel(storiesPath, { threads: 1 });
    models.push(model);
    const first = await model.generate("Once upon a time", { maxTokens: 20, temperature: 0 }).text();
    const again = await model.generate("Once upon a time", { maxTokens: 20, temperature: 0 }).text();
    expect(again.text).toBe(first.text);

    const stop = await model
      .generate("Once upon a time", { maxTokens: 60, temperature: 0, stop: ["Lily"] })
      .text();
    expect(stop.result.finishReason).toBe("stop");
    expect(stop.text).toBe(goldenText.slice("Once upon a time".length, goldenText.indexOf("Lily")));

    // stories260K ends stories with BOS, not EOS: treat its third generated token as end-of-generation.
    const session = new ModelSession(openModelFile(storiesPath), { backend: "reference" });
    const third = first.tokens[2];
    const eogTokenizer = {
      isEog: (id: number) => id === third,
      tokenToPiece: (id: number) => session.tokenizer.tokenToPiece(id),
    };
    const gen3 = generateTokens(
      session.model,
      session.model.createContext(64),
      eogTokenizer,
      [1, 403, 407, 261, 378],
      { temperature: 0 },
    );
    let step = gen3.next();
    const seen: number[] = [];
    while (!step.done) {
      seen.push(step.value.token);
      step = gen3.next();
    }
    expect(seen).toEqual(first.tokens.slice(0, 2));
    expect(step.value).toMatchObject({ finishReason: "eos", completionTokens: 3 });

    const controller = new AbortController();
    const gen = model.generate("Once upon a time", {
      maxTokens: 1000,
      temperature: 0.8,
      seed: 1,
      ignoreEos: true,
      signal: controller.signal,
    });
    let n = 0;
    for await (const _ of gen) {
      if (++n === 5) controller.abort();
    }
    const result = await gen.result;
    expect(result.finishReason).toBe("aborted");
    expect(result.completionTokens).toBeLessThan(1000);
  });

  it("is reproducible with a seed", async () => {
    const model = await loadModel(storiesPath, { threads: 1 });
    models.push(model);
    const a = await model.generate("", { maxTokens: 30, temperature: 1, seed: 123 }).text();
    const b = await model.generate("", { maxTokens: 30, temperature: 1, seed: 123 }).text();
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.length).toBeGreaterThan(0);
  });
});
