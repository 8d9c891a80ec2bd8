import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type { ServerResponse } from "node:http";
import { basename } from "node:path";
import type { TokenLogprob } from "@ryzanstein/engine";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { BatchEngine } from "./batch-engine.js";
import { ChatFormatter } from "./chat.js";
import { HttpError } from "./errors.js";
import { ServerMetrics } from "./metrics.js";
import type { BatchEngineOptions, RequestParams, TokenEvent } from "./protocol.js";
import { ChatCompletionRequest, CompletionRequest, describeZodError, EmbeddingRequest } from "./schemas.js";

/** Options of {@link startServer}. */
export interface ServerOptions extends BatchEngineOptions {
  /** GGUF model to serve. */
  model: string;
  /** Name the API reports for the model (default: the file name without `.gguf`). */
  modelId?: string;
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Bearer key every `/v1` request must present (compared in constant time). */
  apiKey?: string;
  /** pino log level (`silent` in tests). Default `info`. */
  logLevel?: string;
  /** Largest request body in bytes. Default 4 MiB. */
  bodyLimit?: number;
}

/** A listening server. */
export interface RunningServer {
  /** `http://host:port`. */
  readonly url: string;
  /** The fastify instance (routes, logger). */
  readonly app: FastifyInstance;
  /** The batched engine behind it. */
  readonly engine: BatchEngine;
  /**
   * Stops accepting requests, lets in-flight streams finish, then stops the engine. After
   * `graceMs` (default 30 s) whatever is still open is cut: connections are destroyed, requests
   * cancelled and the engine worker terminated, so shutdown always ends.
   */
  close(graceMs?: number): Promise<void>;
}

/** One generated choice while it is being produced. */
interface ChoiceState {
  index: number;
  text: string;
  tokens: number;
  logprobs: { token: string; logprob: number; top: TokenLogprob[] }[];
  finish: string | null;
}

const now = () => performance.now();

/** Starts the engine and an HTTP server with the OpenAI-compatible routes. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const engine = await BatchEngine.start(options.model, options);
  try {
    return await serve(engine, options);
  } catch (e) {
    await engine.close();
    throw e;
  }
}

async function serve(engine: BatchEngine, options: ServerOptions): Promise<RunningServer> {
  const modelId = options.modelId ?? basename(options.model).replace(/\.gguf$/i, "");
  const created = Math.floor(Date.now() / 1000);
  const chat = new ChatFormatter(engine.chatTemplate, engine.tokenizer);
  const metrics = new ServerMetrics(() => engine.stats);
  const maxSeqs = options.maxSeqs ?? 8;
  const maxInflight = maxSeqs + (options.maxQueue ?? 64);
  const keyDigest = options.apiKey ? createHash("sha256").update(options.apiKey).digest() : undefined;
  const streams = new Set<ServerResponse>();
  let draining = false;

  const app = Fastify({
    logger: { level: options.logLevel ?? "info" },
    bodyLimit: options.bodyLimit ?? 4 * 1024 * 1024,
    forceCloseConnections: "idle",
    genReqId: () => randomUUID(),
  });

  // JSON bodies: strict UTF-8, then JSON.parse; errors become OpenAI-shaped 400s.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body: Buffer, done) => {
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch {
      done(new HttpError(400, "the request body is not valid UTF-8", { code: "invalid_utf8" }), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(
        new HttpError(400, `malformed JSON: ${(e as Error).message}`, { code: "invalid_json" }),
        undefined,
      );
    }
  });

  app.setErrorHandler((err, req, reply) => {
    const status = (err as { statusCode?: number }).statusCode;
    const e =
      err instanceof HttpError
        ? err
        : status && status >= 400 && status < 500
          ? new HttpError(status, (err as Error).message)
          : new HttpError(500, "internal server error");
    if (e.status >= 500) req.log.error({ err }, "request failed");
    void reply.code(e.status).headers(e.headers).send(e.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send(new HttpError(404, `no route ${req.method} ${req.url}`, { type: "not_found_error" }).toJSON());
  });

  app.addHook("onRequest", async (req) => {
    if (!req.url.startsWith("/v1/")) return;
    if (draining)
      throw new HttpError(503, "the server is shutting down", {
        type: "overloaded_error",
        headers: { "retry-after": "5" },
      });
    if (!keyDigest) return;
    const h = req.headers.authorization ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(h);
    const given = createHash("sha256")
      .update(m ? m[1] : "")
      .digest();
    if (!m || !timingSafeEqual(given, keyDigest)) {
      throw new HttpError(
        401,
        m ? "incorrect API key provided" : "missing API key (Authorization: Bearer ...)",
        {
          type: "authentication_error",
          code: "invalid_api_key",
        },
      );
    }
  });
  app.addHook("onResponse", async (req, reply) => {
    const endpoint = req.routeOptions.url ?? "unknown";
    metrics.requests.inc({ endpoint, status: String(reply.statusCode) });
  });

  const checkModel = (model: string | null | undefined) => {
    if (model && model !== modelId)
      throw new HttpError(404, `the model '${model}' does not exist; this server serves '${modelId}'`, {
        type: "not_found_error",
        param: "model",
        code: "model_not_found",
      });
  };

  const parse = <T>(
    schema: {
      safeParse(v: unknown): { success: true; data: T } | { success: false; error: import("zod").ZodError };
    },
    body: unknown,
  ): T => {
    if (body === undefined || body === null || typeof body !== "object")
      throw new HttpError(400, "the request body must be a JSON object");
    const r = schema.safeParse(body);
    if (!r.success) {
      const d = describeZodError(r.error);
      throw new HttpError(400, d.message, { param: d.param });
    }
    return r.data;
  };

  /** Sampling and limits shared by both completion routes. */
  const requestParams = (
    b: ChatCompletionRequest | CompletionRequest,
    promptLength: number,
    maxTokens: number | null | undefined,
  ): RequestParams => {
    const room = engine.maxSequenceTokens - promptLength;
    if (room < 1)
      throw new HttpError(
        400,
        `the prompt has ${promptLength} tokens; this model's context holds ${engine.maxSequenceTokens} tokens including the completion`,
        { code: "context_length_exceeded", param: "messages" },
      );
    if (maxTokens != null && maxTokens > room)
      throw new HttpError(
        400,
        `max_tokens ${maxTokens} + ${promptLength} prompt tokens exceed the context of ${engine.maxSequenceTokens} tokens`,
        { code: "context_length_exceeded", param: "max_tokens" },
      );
    const stop = b.stop == null ? [] : typeof b.stop === "string" ? [b.stop] : b.stop;
    return {
      maxTokens: maxTokens ?? room,
      temperature: b.temperature ?? 1,
      topP: b.top_p ?? 1,
      topK: b.top_k ?? 0,
      minP: b.min_p ?? 0,
      presencePenalty: b.presence_penalty ?? 0,
      frequencyPenalty: b.frequency_penalty ?? 0,
      repeatPenalty: b.repeat_penalty ?? 1,
      seed: b.seed ?? undefined,
      stop,
      ignoreEos: b.ignore_eos ?? false,
    };
  };

  const admit = (n: number) => {
    if (engine.inflight + n > maxInflight)
      throw new HttpError(503, "the server is busy; retry shortly", {
        type: "overloaded_error",
        code: "queue_full",
        headers: { "retry-after": "1" },
      });
  };

  const tokenize = (text: string) =>
    engine.tokenizer.encode(text, { addBos: engine.tokenizer.addBos, parseSpecial: true });
  const pieceText = (id: number) => new TextDecoder().decode(engine.tokenizer.tokenToPiece(id));

  /**
   * Runs `n` choices of one prompt and feeds every event to `onEvent`. Resolves when all end;
   * rejects (HttpError) if the engine refuses them before any token. `signal` cancels them.
   */
  const generate = (
    prompt: number[],
    params: RequestParams,
    n: number,
    onEvent: (index: number, e: TokenEvent) => void,
    signal: AbortSignal,
  ): Promise<void> => {
    const t0 = now();
    metrics.promptTokens.inc(prompt.length);
    let first: string | undefined; // the other choices fork from the first one's prompt blocks
    const runs = Array.from(
      { length: n },
      (_, index) =>
        new Promise<void>((resolve, reject) => {
          let last = 0;
          const p = { ...params, seed: params.seed === undefined ? undefined : params.seed + index };
          const handle = engine.submit(
            prompt,
            p,
            {
              onEvent(e) {
                const t = now();
                if (e.token !== undefined) {
                  metrics.generatedTokens.inc();
                  if (last === 0) metrics.ttft.observe((t - t0) / 1000);
                  else metrics.itl.observe((t - last) / 1000);
                  last = t;
                }
                onEvent(index, e);
                if (e.finish) resolve();
              },
              onError(code, message) {
                if (code === "QUEUE_FULL")
                  reject(
                    new HttpError(503, "the server is busy; retry shortly", {
                      type: "overloaded_error",
                      code: "queue_full",
                      headers: { "retry-after": "1" },
                    }),
                  );
                else if (code === "CONTEXT_OVERFLOW")
                  reject(new HttpError(400, message, { code: "context_length_exceeded" }));
                else if (code === "INVALID_ARGUMENT") reject(new HttpError(400, message));
                else reject(new HttpError(500, message));
              },
            },
            first,
          );
          first ??= handle.id;
          const cancel = () => {
            handle.cancel();
            resolve();
          };
          // A client gone before this point has already fired "abort": cancel at once rather than
          // generating the whole completion for nobody.
          if (signal.aborted) cancel();
          else signal.addEventListener("abort", cancel, { once: true });
        }),
    );
    return Promise.all(runs).then(() => undefined);
  };

  /** Starts an SSE response; returns a writer, or undefined once the client has gone. */
  const startSse = (req: FastifyRequest, reply: FastifyReply, abort: AbortController) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    streams.add(res);
    let ended = false;
    res.on("close", () => {
      streams.delete(res);
      if (!ended) abort.abort();
      metrics.requests.inc({ endpoint: req.routeOptions.url ?? "unknown", status: ended ? "200" : "499" });
    });
    return {
      send(obj: unknown) {
        if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(obj)}\n\n`);
      },
      end() {
        ended = true;
        if (!res.writableEnded && !res.destroyed) res.end("data: [DONE]\n\n");
      },
      fail(e: HttpError) {
        ended = true;
        if (!res.writableEnded && !res.destroyed) {
          res.write(`data: ${JSON.stringify(e.toJSON())}\n\n`);
          res.end("data: [DONE]\n\n");
        }
      },
    };
  };

  const finishReason = (r: string) => (r === "length" ? "length" : "stop");
  const usage = (prompt: number, completion: number) => ({
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  });

  // ---- routes ----

  app.get("/health", async () => ({
    status: draining ? "draining" : "ok",
    model: modelId,
    backend: engine.backend,
    running: engine.stats.running,
    waiting: engine.stats.waiting,
    kv_blocks_used: engine.stats.usedBlocks,
    kv_blocks_total: engine.stats.totalBlocks,
  }));

  app.get("/metrics", async (_req, reply) => {
    void reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get("/v1/models", async () => ({
    object: "list",
    data: [{ id: modelId, object: "model", created, owned_by: "ryzanstein" }],
  }));

  app.get<{ Params: { id: string } }>("/v1/models/:id", async (req) => {
    checkModel(req.params.id);
    return { id: modelId, object: "model", created, owned_by: "ryzanstein" };
  });

  app.post("/v1/chat/completions", async (req, reply) => {
    const b = parse(ChatCompletionRequest, req.body);
    checkModel(b.model);
    const messages = b.messages.map((m) => ({
      role: m.role,
      content: typeof m.content === "string" ? m.content : (m.content ?? []).map((p) => p.text).join(""),
    }));
    const prompt = tokenize(chat.render(messages));
    const params = requestParams(b, prompt.length, b.max_completion_tokens ?? b.max_tokens);
    const top = b.top_logprobs ?? 0;
    if (top > 0 && !b.logprobs)
      throw new HttpError(400, "top_logprobs requires logprobs: true", { param: "top_logprobs" });
    params.logprobs = b.logprobs ?? false;
    params.topLogprobs = top;
    const n = b.n ?? 1;
    admit(n);
    const id = `chatcmpl-${randomUUID()}`;
    const stamp = Math.floor(Date.now() / 1000);
    const abort = new AbortController();
    const lpEntry = (e: TokenEvent) => ({
      token: pieceText(e.token as number),
      logprob: e.logprob as number,
      bytes: Array.from(engine.tokenizer.tokenToPiece(e.token as number)),
      top_logprobs: (e.top ?? []).map((t) => ({
        token: pieceText(t.token),
        logprob: t.logprob,
        bytes: Array.from(engine.tokenizer.tokenToPiece(t.token)),
      })),
    });
    const choices: ChoiceState[] = Array.from({ length: n }, (_, index) => ({
      index,
      text: "",
      tokens: 0,
      logprobs: [],
      finish: null,
    }));
    const chatLogprobs: ReturnType<typeof lpEntry>[][] = Array.from({ length: n }, () => []);

    if (b.stream) {
      const sse = startSse(req, reply, abort);
      const base = {
        id,
        object: "chat.completion.chunk",
        created: stamp,
        model: modelId,
        system_fingerprint: null,
      };
      for (let i = 0; i < n; i++)
        sse.send({
          ...base,
          choices: [
            { index: i, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
          ],
        });
      try {
        await generate(
          prompt,
          params,
          n,
          (i, e) => {
            const c = choices[i];
            if (e.token !== undefined) c.tokens++;
            if (e.text || e.token !== undefined)
              sse.send({
                ...base,
                choices: [
                  {
                    index: i,
                    delta: { content: e.text },
                    logprobs: params.logprobs && e.logprob !== undefined ? { content: [lpEntry(e)] } : null,
                    finish_reason: null,
                  },
                ],
              });
            if (e.finish) {
              c.finish = finishReason(e.finish.reason);
              sse.send({
                ...base,
                choices: [{ index: i, delta: {}, logprobs: null, finish_reason: c.finish }],
              });
            }
          },
          abort.signal,
        );
        if (b.stream_options?.include_usage)
          sse.send({
            ...base,
            choices: [],
            usage: usage(
              prompt.length,
              choices.reduce((s, c) => s + c.tokens, 0),
            ),
          });
        sse.end();
      } catch (e) {
        abort.abort();
        sse.fail(e instanceof HttpError ? e : new HttpError(500, "internal server error"));
      }
      return reply;
    }

    reply.raw.on("close", () => {
      if (!reply.raw.writableEnded) abort.abort();
    });
    try {
      await generate(
        prompt,
        params,
        n,
        (i, e) => {
          const c = choices[i];
          c.text += e.text;
          if (e.token !== undefined) c.tokens++;
          if (params.logprobs && e.logprob !== undefined) chatLogprobs[i].push(lpEntry(e));
          if (e.finish) c.finish = finishReason(e.finish.reason);
        },
        abort.signal,
      );
    } catch (e) {
      abort.abort();
      throw e;
    }
    return {
      id,
      object: "chat.completion",
      created: stamp,
      model: modelId,
      system_fingerprint: null,
      choices: choices.map((c) => ({
        index: c.index,
        message: { role: "assistant", content: c.text },
        logprobs: params.logprobs ? { content: chatLogprobs[c.index] } : null,
        finish_reason: c.finish ?? "stop",
      })),
      usage: usage(
        prompt.length,
        choices.reduce((s, c) => s + c.tokens, 0),
      ),
    };
  });

  app.post("/v1/completions", async (req, reply) => {
    const b = parse(CompletionRequest, req.body);
    checkModel(b.model);
    const prompt =
      typeof b.prompt === "string"
        ? tokenize(b.prompt)
        : typeof b.prompt[0] === "string"
          ? tokenize(b.prompt[0] as string)
          : (b.prompt as number[]);
    if (prompt.length === 0) throw new HttpError(400, "the prompt has no tokens", { param: "prompt" });
    const vocab = engine.config.vocabSize;
    if (prompt.some((t) => t >= vocab))
      throw new HttpError(400, `token ids must be below ${vocab}`, { param: "prompt" });
    const params = requestParams(b, prompt.length, b.max_tokens ?? 16);
    const top = b.logprobs ?? null;
    params.logprobs = top !== null;
    params.topLogprobs = top ?? 0;
    const n = b.n ?? 1;
    admit(n);
    const echo = b.echo ? engine.tokenizer.decode(prompt) : "";
    const id = `cmpl-${randomUUID()}`;
    const stamp = Math.floor(Date.now() / 1000);
    const abort = new AbortController();
    const choices: ChoiceState[] = Array.from({ length: n }, (_, index) => ({
      index,
      text: echo,
      tokens: 0,
      logprobs: [],
      finish: null,
    }));
    const lp = (entries: ChoiceState["logprobs"]) =>
      top === null
        ? null
        : {
            tokens: entries.map((x) => x.token),
            token_logprobs: entries.map((x) => x.logprob),
            top_logprobs: entries.map((x) =>
              Object.fromEntries(x.top.map((t) => [pieceText(t.token), t.logprob])),
            ),
            text_offset: [] as number[],
          };
    const entry = (e: TokenEvent) => ({
      token: pieceText(e.token as number),
      logprob: e.logprob as number,
      top: e.top ?? [],
    });

    if (b.stream) {
      const sse = startSse(req, reply, abort);
      const base = {
        id,
        object: "text_completion",
        created: stamp,
        model: modelId,
        system_fingerprint: null,
      };
      try {
        await generate(
          prompt,
          params,
          n,
          (i, e) => {
            const c = choices[i];
            if (e.token !== undefined) c.tokens++;
            const l = top !== null && e.logprob !== undefined ? [entry(e)] : [];
            if (e.text || e.token !== undefined || e.finish)
              sse.send({
                ...base,
                choices: [
                  {
                    index: i,
                    text: e.text,
                    logprobs: lp(l),
                    finish_reason: e.finish ? finishReason(e.finish.reason) : null,
                  },
                ],
              });
          },
          abort.signal,
        );
        if (b.stream_options?.include_usage)
          sse.send({
            ...base,
            choices: [],
            usage: usage(
              prompt.length,
              choices.reduce((s, c) => s + c.tokens, 0),
            ),
          });
        sse.end();
      } catch (e) {
        abort.abort();
        sse.fail(e instanceof HttpError ? e : new HttpError(500, "internal server error"));
      }
      return reply;
    }

    reply.raw.on("close", () => {
      if (!reply.raw.writableEnded) abort.abort();
    });
    try {
      await generate(
        prompt,
        params,
        n,
        (i, e) => {
          const c = choices[i];
          c.text += e.text;
          if (e.token !== undefined) c.tokens++;
          if (top !== null && e.logprob !== undefined) c.logprobs.push(entry(e));
          if (e.finish) c.finish = finishReason(e.finish.reason);
        },
        abort.signal,
      );
    } catch (e) {
      abort.abort();
      throw e;
    }
    return {
      id,
      object: "text_completion",
      created: stamp,
      model: modelId,
      system_fingerprint: null,
      choices: choices.map((c) => ({
        index: c.index,
        text: c.text,
        logprobs: lp(c.logprobs),
        finish_reason: c.finish ?? "stop",
      })),
      usage: usage(
        prompt.length,
        choices.reduce((s, c) => s + c.tokens, 0),
      ),
    };
  });

  app.post("/v1/embeddings", async (req) => {
    const b = parse(EmbeddingRequest, req.body);
    checkModel(b.model);
    const inputs: number[][] =
      typeof b.input === "string"
        ? [tokenize(b.input)]
        : typeof b.input[0] === "number"
          ? [b.input as number[]]
          : (b.input as string[]).map(tokenize);
    for (const p of inputs) {
      if (p.length === 0) throw new HttpError(400, "an input has no tokens", { param: "input" });
      if (p.length > engine.maxSequenceTokens)
        throw new HttpError(
          400,
          `an input has ${p.length} tokens; the context holds ${engine.maxSequenceTokens}`,
          {
            param: "input",
            code: "context_length_exceeded",
          },
        );
      if (p.some((t) => t >= engine.config.vocabSize))
        throw new HttpError(400, "token id out of range", { param: "input" });
    }
    admit(inputs.length);
    let total = 0;
    const data = await Promise.all(
      inputs.map(async (p, index) => {
        try {
          const r = await engine.embed(p);
          total += r.promptTokens;
          const values = Array.from(r.data);
          return {
            object: "embedding",
            index,
            embedding:
              b.encoding_format === "base64" ? Buffer.from(r.data.buffer).toString("base64") : values,
          };
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code === "QUEUE_FULL")
            throw new HttpError(503, "the server is busy; retry shortly", {
              type: "overloaded_error",
              headers: { "retry-after": "1" },
            });
          throw new HttpError(code === "INTERNAL" ? 500 : 400, (e as Error).message);
        }
      }),
    );
    metrics.promptTokens.inc(total);
    return { object: "list", data, model: modelId, usage: { prompt_tokens: total, total_tokens: total } };
  });

  await app.listen({ host: options.host ?? "127.0.0.1", port: options.port ?? 8080 });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : options.port;
  const host = options.host ?? "127.0.0.1";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    engine,
    close(graceMs = 30_000) {
      closing ??= (async () => {
        draining = true;
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<false>((res) => {
          timer = setTimeout(() => res(false), graceMs);
        });
        // In-flight requests (and SSE streams, which hold their connections) finish first.
        const appClosed = app.close();
        const drained = await Promise.race([appClosed.then(() => engine.idle()).then(() => true), deadline]);
        clearTimeout(timer);
        if (!drained) {
          app.log.warn({ graceMs }, "shutdown grace period over: closing the remaining connections");
          app.server.closeAllConnections();
        }
        // Terminating the worker fails whatever is still in flight, which ends those responses.
        await engine.close(drained ? undefined : 0);
        await appClosed;
      })();
      return closing;
    },
  };
}
