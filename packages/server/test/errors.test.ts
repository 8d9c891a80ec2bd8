import { RyzansteinError } from "@ryzanstein/core-tensor";
import { modelPath as defaultModelPath } from "@ryzanstein/default-model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServer } from "../src/index.js";
import { readSse, startTestServer } from "./helpers.js";

const KEY = "sk-secret-key";

async function post(url: string, path: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, ...headers },
    body,
  });
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as {
      error?: { message: string; type: string; code: string | null; param: string | null };
    },
  };
}

describe("bad input gets 4xx with a clear message; other requests are unaffected", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ apiKey: KEY, contextSize: 64 });
  });
  afterAll(async () => {
    await server.close();
  });

  const cases: [string, string, string | Buffer, Record<string, string>, number, RegExp][] = [
    ["malformed JSON", "/v1/completions", '{"prompt": "hi",', {}, 400, /malformed JSON/],
    ["a non-object body", "/v1/completions", "[1,2]", {}, 400, /expected object|JSON object/],
    ["a wrong type", "/v1/completions", JSON.stringify({ prompt: 5 }), {}, 400, /^prompt: /],
    [
      "a wrong type in chat",
      "/v1/chat/completions",
      JSON.stringify({ messages: [{ role: "user", content: 3 }] }),
      {},
      400,
      /messages\.0\.content/,
    ],
    [
      "an unknown role",
      "/v1/chat/completions",
      JSON.stringify({ messages: [{ role: "wizard", content: "x" }] }),
      {},
      400,
      /role/,
    ],
    ["no messages", "/v1/chat/completions", JSON.stringify({ messages: [] }), {}, 400, /messages/],
    [
      "an unknown model",
      "/v1/completions",
      JSON.stringify({ model: "gpt-9", prompt: "hi" }),
      {},
      404,
      /gpt-9.*does not exist/,
    ],
    [
      "max_tokens 0",
      "/v1/completions",
      JSON.stringify({ prompt: "hi", max_tokens: 0 }),
      {},
      400,
      /max_tokens/,
    ],
    [
      "max_tokens -3",
      "/v1/completions",
      JSON.stringify({ prompt: "hi", max_tokens: -3 }),
      {},
      400,
      /max_tokens/,
    ],
    ["a huge n", "/v1/completions", JSON.stringify({ prompt: "hi", n: 100000 }), {}, 400, /^n: /],
    [
      "a prompt longer than the context",
      "/v1/completions",
      JSON.stringify({ prompt: "word ".repeat(300) }),
      {},
      400,
      /context/,
    ],
    [
      "max_tokens beyond the context",
      "/v1/completions",
      JSON.stringify({ prompt: "hi", max_tokens: 1000 }),
      {},
      400,
      /exceed the context/,
    ],
    [
      "token ids outside the vocabulary",
      "/v1/completions",
      JSON.stringify({ prompt: [1, 999999] }),
      {},
      400,
      /token ids/,
    ],
    [
      "temperature out of range",
      "/v1/completions",
      JSON.stringify({ prompt: "hi", temperature: 9 }),
      {},
      400,
      /temperature/,
    ],
    [
      "invalid UTF-8",
      "/v1/completions",
      Buffer.from([0x7b, 0x22, 0x70, 0x72, 0x6f, 0x6d, 0x70, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
      {},
      400,
      /UTF-8/,
    ],
    [
      "a missing API key",
      "/v1/completions",
      JSON.stringify({ prompt: "hi" }),
      { authorization: "" },
      401,
      /missing API key/,
    ],
    [
      "a wrong API key",
      "/v1/completions",
      JSON.stringify({ prompt: "hi" }),
      { authorization: "Bearer sk-nope" },
      401,
      /incorrect API key/,
    ],
    ["an unknown route", "/v1/nothing", "{}", {}, 404, /no route/],
  ];

  it.each(cases)("%s", async (_name, path, body, headers, status, message) => {
    // a healthy request runs alongside each bad one
    const good = post(
      server.url,
      "/v1/completions",
      JSON.stringify({ prompt: "Once upon a time", max_tokens: 8, temperature: 0 }),
    );
    const r = await post(server.url, path, body, headers);
    expect(r.status).toBe(status);
    expect(r.body.error?.message).toMatch(message);
    expect(typeof r.body.error?.type).toBe("string");
    const g = await good;
    expect(g.status).toBe(200);
  });

  it("health and metrics need no key; metrics name what the issue asks for", async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    for (const name of [
      "ryzanstein_requests_total",
      "ryzanstein_prompt_tokens_total",
      "ryzanstein_generation_tokens_total",
      "ryzanstein_time_to_first_token_seconds_bucket",
      "ryzanstein_inter_token_latency_seconds_bucket",
      "ryzanstein_queue_depth",
      "ryzanstein_kv_cache_usage_ratio",
      "ryzanstein_prefix_cache_hit_ratio",
    ])
      expect(text).toContain(name);
    expect(text).toMatch(/ryzanstein_requests_total\{endpoint="\/v1\/completions",status="400"\} \d+/);
  });
});

describe("cancellation, back-pressure and shutdown", () => {
  it("a client that disconnects mid-stream cancels its request and frees its blocks", async () => {
    const server = await startTestServer({ contextSize: 256 });
    try {
      const ctrl = new AbortController();
      const res = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 200, stream: true, ignore_eos: true }),
        signal: ctrl.signal,
      });
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      await reader.read();
      expect(server.engine.stats.usedBlocks).toBeGreaterThan(0);
      ctrl.abort();
      await server.engine.idle();
      for (let i = 0; i < 50 && server.engine.stats.usedBlocks > 0; i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(server.engine.stats.usedBlocks).toBe(0);
      expect(server.engine.stats.running).toBe(0);
    } finally {
      await server.close();
    }
  });

  it("a full queue answers 503 with Retry-After while accepted requests complete", async () => {
    const server = await startTestServer({ maxSeqs: 1, maxQueue: 1 });
    try {
      const body = JSON.stringify({ prompt: "Once upon a time", max_tokens: 30, ignore_eos: true });
      const results = await Promise.all(
        Array.from({ length: 5 }, () => post(server.url, "/v1/completions", body)),
      );
      const statuses = results.map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(2);
      const busy = results.filter((r) => r.status === 503);
      expect(busy.length).toBeGreaterThan(0);
      for (const b of busy) {
        expect(b.headers.get("retry-after")).toBe("1");
        expect(b.body.error?.type).toBe("overloaded_error");
      }
    } finally {
      await server.close();
    }
  });

  it("graceful shutdown lets an in-flight stream finish with [DONE] and refuses new requests", async () => {
    const server = await startTestServer();
    const res = fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 60, stream: true, ignore_eos: true }),
    });
    const r = await res;
    const closing = server.close();
    await new Promise((r) => setTimeout(r, 20));
    const late = await fetch(`${server.url}/v1/models`).then(
      (x) => x.status,
      () => "refused",
    );
    expect([503, "refused"]).toContain(late);
    const events = await readSse(r);
    await closing;
    expect(events[events.length - 1]).toBe("[DONE]");
    expect(events.length).toBe(61); // 60 token chunks (the last carries finish_reason), then [DONE]
  });

  it("shutdown past its grace period cuts the streams still running and stops the engine", async () => {
    const server = await startTestServer({ contextSize: 256 });
    const res = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 240, stream: true, ignore_eos: true }),
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // the stream has started
    const t0 = Date.now();
    await server.close(50);
    expect(Date.now() - t0).toBeLessThan(20_000);
    // The stream ends (cut) instead of running its 240 tokens.
    const dec = new TextDecoder();
    let text = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += dec.decode(value, { stream: true });
      }
    } catch {
      // the connection was destroyed: also a cut
    }
    expect((text.match(/"finish_reason":"length"/g) ?? []).length).toBe(0);
    expect(server.engine.inflight).toBe(0);
  });
});

describe("engine options", () => {
  it("an unknown KV cache type is refused with INVALID_ARGUMENT before the engine starts", async () => {
    const err = await startTestServer({ kvType: "q4_0" as "f16" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RyzansteinError);
    expect((err as RyzansteinError).code).toBe("INVALID_ARGUMENT");
    expect((err as Error).message).toMatch(/f16, f32, q8_0/);
  });

  it("a q8_0 KV cache fits about 1.9x the blocks of f16 in the same memory", async () => {
    const sizes: Record<string, number> = {};
    for (const kvType of ["f16", "q8_0"] as const) {
      const server = await startTestServer({
        model: defaultModelPath,
        kvType,
        kvMemoryBytes: 4 * 2 ** 20,
        blockSize: 16,
      });
      sizes[kvType] = server.engine.kv.numBlocks;
      await server.close();
    }
    // the default model: 4 layers, K/V rows of 256 values: 2·4·16·(256 + 2·8) bytes per q8_0 block, 2·4·16·512 per f16 block
    expect(sizes.q8_0).toBe(Math.floor((4 * 2 ** 20) / (2 * 4 * 16 * 272)));
    expect(sizes.f16).toBe(Math.floor((4 * 2 ** 20) / (2 * 4 * 16 * 512)));
  });

  it("a q8_0 KV cache is refused for heads narrower than a Q8_0 block (stories260K: headDim 8)", async () => {
    const err = await startTestServer({ kvType: "q8_0" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RyzansteinError);
    expect((err as RyzansteinError).code).toBe("INVALID_ARGUMENT");
    expect((err as Error).message).toMatch(/headDim 8/);
  });
});
