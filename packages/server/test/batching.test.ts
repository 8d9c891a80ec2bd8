import { modelPath as defaultModelPath } from "@ryzanstein/default-model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServer } from "../src/index.js";
import { startTestServer } from "./helpers.js";

const PROMPTS = [
  "Once upon a time",
  "The little dog",
  "Lily and Tom went to the park. They",
  "One day, a big bird",
  "Tim had a red ball",
  "The sun was hot and",
  "Sue liked to draw",
  "There was a small boat on the lake.",
  "Mom said",
  "A girl named Ann",
];

interface Out {
  text: string;
  tokens: string[];
  logprobs: number[];
}

async function complete(url: string, prompt: string, maxTokens: number): Promise<Out> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, logprobs: 1 }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as {
    choices: { text: string; logprobs: { tokens: string[]; token_logprobs: number[] } }[];
  };
  const c = body.choices[0];
  return { text: c.text, tokens: c.logprobs.tokens, logprobs: c.logprobs.token_logprobs };
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

// F16 on stories260K (clear margins); a q8_0 cache needs headDim >= 32, so it runs on the default
// model (headDim 64).
describe.each([
  { kvType: "f16", name: "stories260K", model: undefined },
  { kvType: "q8_0", name: "the default model", model: defaultModelPath },
] as const)("continuous batching on $name ($kvType KV cache)", ({ kvType, model }) => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({
      ...(model ? { model } : {}),
      maxSeqs: 8,
      maxBatchTokens: 24,
      blockSize: 8,
      prefixCaching: false,
      kvType,
    });
  });
  afterAll(async () => {
    await server.close();
  });

  it("greedy outputs of concurrent requests equal the requests run alone; log-probabilities within 1e-4", async () => {
    const lengths = PROMPTS.map((_, i) => 12 + ((i * 7) % 30));
    const alone: Out[] = [];
    for (let i = 0; i < PROMPTS.length; i++) alone.push(await complete(server.url, PROMPTS[i], lengths[i]));
    // all at once: 10 requests > 8 sequences, a small token budget forces chunked prefill beside decode
    const together = await Promise.all(PROMPTS.map((p, i) => complete(server.url, p, lengths[i])));
    let maxDiff = 0;
    for (let i = 0; i < PROMPTS.length; i++) {
      expect(together[i].text, PROMPTS[i]).toBe(alone[i].text);
      expect(together[i].tokens).toEqual(alone[i].tokens);
      for (let j = 0; j < alone[i].logprobs.length; j++)
        maxDiff = Math.max(maxDiff, Math.abs(together[i].logprobs[j] - alone[i].logprobs[j]));
    }
    console.log(`batched vs alone (${kvType} KV): max |Δ logprob| = ${maxDiff.toExponential(2)}`);
    expect(server.engine.kv.kvType).toBe(kvType);
    expect(maxDiff).toBeLessThan(1e-4);
    expect(await metric(server.url, "ryzanstein_kv_blocks_used")).toBe(0);
  });
});

describe("parallel sampling (n > 1) forks the prompt's blocks", () => {
  it("greedy n = 3 gives three copies of the n = 1 output, and frees every block", async () => {
    const server = await startTestServer({ blockSize: 8 });
    try {
      const body = {
        prompt: "Once upon a time, in a small town, there lived",
        max_tokens: 20,
        temperature: 0,
      };
      const post = (b: object) =>
        fetch(`${server.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(b),
        }).then(
          (r) => r.json() as Promise<{ choices: { text: string }[]; usage: { prompt_tokens: number } }>,
        );
      const one = await post(body);
      const three = await post({ ...body, n: 3 });
      expect(three.choices.map((c) => c.text)).toEqual([0, 1, 2].map(() => one.choices[0].text));
      expect(three.usage.prompt_tokens).toBe(one.usage.prompt_tokens); // counted once, as OpenAI does
      await server.engine.idle();
      expect(server.engine.stats.usedBlocks).toBe(0);
    } finally {
      await server.close();
    }
  });
});

describe("prefix cache", () => {
  let server: RunningServer;
  let fresh: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ blockSize: 8 });
    fresh = await startTestServer({ blockSize: 8 });
  });
  afterAll(async () => {
    await server.close();
    await fresh.close();
  });

  it("a second request sharing a long prefix reuses its blocks and gives the output of a fresh server", async () => {
    const prefix =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball under a tree.";
    await complete(server.url, `${prefix} She ran to it and`, 16);
    const before = await metric(server.url, "ryzanstein_prefix_cache_hit_tokens");
    const second = await complete(server.url, `${prefix} Her mom said`, 16);
    const hit = (await metric(server.url, "ryzanstein_prefix_cache_hit_tokens")) - before;
    expect(hit).toBeGreaterThanOrEqual(32);
    const reference = await complete(fresh.url, `${prefix} Her mom said`, 16);
    expect(second.text).toBe(reference.text);
    for (let j = 0; j < reference.logprobs.length; j++)
      expect(Math.abs(second.logprobs[j] - reference.logprobs[j])).toBeLessThan(1e-4);
    // the same prompt again is served from the cache, with the same output
    const again = await complete(server.url, `${prefix} Her mom said`, 16);
    expect(again.text).toBe(second.text);
    expect(await metric(server.url, "ryzanstein_prefix_cache_hit_ratio")).toBeGreaterThan(0);
  });
});
