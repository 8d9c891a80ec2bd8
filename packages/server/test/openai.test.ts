import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServer } from "../src/index.js";
import { startTestServer } from "./helpers.js";

describe("the official openai client against a listening server", () => {
  let server: RunningServer;
  let client: OpenAI;
  beforeAll(async () => {
    server = await startTestServer({ apiKey: "sk-test" });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-test", maxRetries: 0 });
  });
  afterAll(async () => {
    await server.close();
  });

  it("lists the model", async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["stories260K"]);
  });

  it("completes text, non-streaming, greedy", async () => {
    const r = await client.completions.create({
      model: "stories260K",
      prompt: "Once upon a time",
      max_tokens: 20,
      temperature: 0,
    });
    expect(r.object).toBe("text_completion");
    expect(r.choices[0].text.length).toBeGreaterThan(10);
    expect(r.choices[0].finish_reason).toBe("length");
    expect(r.usage).toEqual({ prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 });
  });

  it("streams text completions with the same text as non-streaming, and usage", async () => {
    const params = { prompt: "Once upon a time", max_tokens: 20, temperature: 0 } as const;
    const whole = await client.completions.create({ model: "stories260K", ...params });
    const stream = await client.completions.create({
      model: "stories260K",
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: unknown;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.text;
        finish = c.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0].text);
    expect(finish).toBe("length");
    expect(usage).toEqual({ prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 });
  });

  it("chats, streaming and not, with the same greedy text", async () => {
    const messages = [{ role: "user" as const, content: "Tell me a story about a cat." }];
    const whole = await client.chat.completions.create({
      model: "stories260K",
      messages,
      max_tokens: 24,
      temperature: 0,
    });
    expect(whole.object).toBe("chat.completion");
    expect(whole.choices[0].message.role).toBe("assistant");
    expect(whole.choices[0].message.content?.length).toBeGreaterThan(0);
    const stream = await client.chat.completions.create({
      model: "stories260K",
      messages,
      max_tokens: 24,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe(whole.choices[0].message.content);
  });

  it("returns chat logprobs and n choices", async () => {
    const r = await client.chat.completions.create({
      model: "stories260K",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 5,
      temperature: 0.8,
      seed: 3,
      n: 3,
      logprobs: true,
      top_logprobs: 2,
    });
    expect(r.choices).toHaveLength(3);
    for (const c of r.choices) {
      expect(c.logprobs?.content).toHaveLength(5);
      expect(c.logprobs?.content?.[0].top_logprobs).toHaveLength(2);
      expect(c.logprobs?.content?.[0].logprob).toBeLessThanOrEqual(0);
    }
  });

  it("embeds text", async () => {
    const r = await client.embeddings.create({
      model: "stories260K",
      input: ["a cat", "a dog"],
      encoding_format: "float",
    });
    expect(r.data).toHaveLength(2);
    const v = r.data[0].embedding;
    expect(v.length).toBe(64);
    expect(Math.hypot(...v)).toBeCloseTo(1, 4);
  });

  it("rejects a wrong key through the client as AuthenticationError", async () => {
    const bad = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-wrong", maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});
