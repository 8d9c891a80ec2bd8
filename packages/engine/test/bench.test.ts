import { NativeBackend } from "@ryzanstein/kernels-native";
import { describe, expect, it } from "vitest";
import {
  benchmarkModel,
  type Context,
  Model,
  openModelFile,
  readLlamaWeights,
  readModelConfig,
} from "../src/index.js";
import { storiesPath } from "./helpers.js";

describe("benchmarkModel", () => {
  it("runs every repetition from the given depth, with the given KV cache type", () => {
    const gguf = openModelFile(storiesPath);
    const config = readModelConfig(gguf);
    const model = new Model(config, readLlamaWeights(gguf, config), new NativeBackend({ threads: 1 }));
    // Record where each forward call starts and the cache it writes.
    const calls: { at: number; n: number; kv: string }[] = [];
    const forward = model.forward.bind(model);
    model.forward = (ctx: Context, tokens: ArrayLike<number>, ...rest) => {
      calls.push({ at: ctx.length, n: tokens.length, kv: ctx.kvType });
      return forward(ctx, tokens, ...rest);
    };
    const results = benchmarkModel(model, 1, {
      promptTokens: 8,
      genTokens: 3,
      repetitions: 2,
      depth: 20,
      kvCache: "f32",
    });
    expect(results.map((r) => r.test)).toEqual(["pp8 @ d20", "tg3 @ d20"]);
    expect(calls.every((c) => c.kv === "f32")).toBe(true);
    // the fill, then warm-up + 2 repetitions of pp8 from position 20, then 3 of tg3 (3 tokens each)
    expect(calls[0]).toEqual({ at: 0, n: 20, kv: "f32" });
    expect(calls.slice(1, 4)).toEqual(Array(3).fill({ at: 20, n: 8, kv: "f32" }));
    expect(calls.slice(4).map((c) => c.at)).toEqual([20, 21, 22, 20, 21, 22, 20, 21, 22]);
    expect(() => benchmarkModel(model, 1, { depth: -1 })).toThrow(/depth must be an integer >= 0/);
    model.backend.dispose?.();
  });
});
