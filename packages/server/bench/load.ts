// Load test for the OpenAI-compatible server: many concurrent clients on loopback for a bounded
// time, mixing streaming, non-streaming, cancelled and malformed requests. It checks that no
// response is a 5xx other than deliberate 503s, that every accepted stream ends with [DONE], that
// the KV blocks go back to zero, and how RSS moves after warm-up.
//
//   node --experimental-strip-types packages/server/bench/load.ts [clients=64] [seconds=60]
// (or through vitest: the short version is test/load.test.ts)
import { join } from "node:path";
import { fixturesDir } from "@ryzanstein/test-support";
import { type RunningServer, startServer } from "../src/index.js";

/** Figures of one load run. */
export interface LoadReport {
  clients: number;
  seconds: number;
  requests: number;
  byStatus: Record<string, number>;
  streamsAccepted: number;
  streamsWithoutDone: number;
  cancelled: number;
  unexpected: string[];
  tokens: number;
  kvBlocksUsedAfter: number;
  rssWarmMiB: number;
  rssEndMiB: number;
  rssGrowth: number;
  /** V8 heap in use after a full GC (with --expose-gc), at warm-up and at the end. */
  heapWarmMiB: number;
  heapEndMiB: number;
}

/** Runs a full GC when node was started with --expose-gc. */
function collect(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

const PROMPTS = [
  "Once upon a time",
  "The little dog",
  "Lily went to the park",
  "Tom had a big red ball",
  "One day",
];

/** Drives `server` with `clients` concurrent loops for `seconds`. */
export async function runLoad(server: RunningServer, clients: number, seconds: number): Promise<LoadReport> {
  const url = server.url;
  const end = Date.now() + seconds * 1000;
  const warmAt = Date.now() + seconds * 400;
  const r: LoadReport = {
    clients,
    seconds,
    requests: 0,
    byStatus: {},
    streamsAccepted: 0,
    streamsWithoutDone: 0,
    cancelled: 0,
    unexpected: [],
    tokens: 0,
    kvBlocksUsedAfter: -1,
    rssWarmMiB: 0,
    rssEndMiB: 0,
    rssGrowth: 0,
    heapWarmMiB: 0,
    heapEndMiB: 0,
  };
  let rand = 987654321;
  const next = () => {
    rand = (Math.imul(rand, 1103515245) + 12345) >>> 0;
    return rand / 2 ** 32;
  };
  const count = (status: number) => {
    r.requests++;
    r.byStatus[status] = (r.byStatus[status] ?? 0) + 1;
    if (status >= 500 && status !== 503) r.unexpected.push(`status ${status}`);
  };
  // A client told to retry (503, Retry-After) waits a little, as real clients do.
  const backoff = () => new Promise((res) => setTimeout(res, 50 + next() * 200));
  const post = (path: string, body: string, ctrl = new AbortController()) => {
    const k = nextRequest++;
    pending.set(k, { what: `${path} ${body.slice(0, 120)}`, since: Date.now(), ctrl });
    const done = () => pending.delete(k);
    const res = fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      signal: ctrl.signal,
    });
    return { res, done };
  };

  // Every request in flight, so a request that never ends is reported (and aborted) instead of
  // hanging the run: nothing should take longer than the run itself plus a generous grace.
  const pending = new Map<number, { what: string; since: number; ctrl: AbortController }>();
  let nextRequest = 0;
  const watchdog = setInterval(() => {
    for (const [k, p] of pending)
      if (Date.now() - p.since > Math.max(30_000, seconds * 1000)) {
        r.unexpected.push(
          `hung ${Math.round((Date.now() - p.since) / 1000)} s: ${p.what}; engine ${JSON.stringify(server.engine.stats)}`,
        );
        pending.delete(k);
        p.ctrl.abort();
      }
  }, 1000);
  const client = async () => {
    while (Date.now() < end) {
      const kind = next();
      const prompt = PROMPTS[Math.floor(next() * PROMPTS.length)];
      const maxTokens = 8 + Math.floor(next() * 40);
      const chat = next() < 0.5;
      const path = chat ? "/v1/chat/completions" : "/v1/completions";
      const body = chat
        ? { messages: [{ role: "user", content: prompt }], max_tokens: maxTokens, temperature: next() }
        : { prompt, max_tokens: maxTokens, temperature: next() };
      let done = () => {};
      try {
        if (kind < 0.35 || (kind >= 0.6 && kind < 0.8)) {
          // streaming; between 0.6 and 0.8 the client walks away mid-stream
          const cancel = kind >= 0.6;
          const ctrl = new AbortController();
          const req = post(path, JSON.stringify({ ...body, stream: true }), ctrl);
          done = req.done;
          const res = await req.res;
          count(res.status);
          if (res.status !== 200) {
            await res.text();
            if (res.status === 503) await backoff();
            continue;
          }
          r.streamsAccepted++;
          const reader = (res.body as ReadableStream<Uint8Array>).getReader();
          const dec = new TextDecoder();
          let text = "";
          let chunks = 0;
          const stopAfter = cancel ? 1 + Math.floor(next() * 4) : Number.POSITIVE_INFINITY;
          for (;;) {
            if (chunks >= stopAfter) {
              ctrl.abort();
              r.cancelled++;
              r.streamsAccepted--;
              break;
            }
            const { done, value } = await reader.read();
            if (done) break;
            text += dec.decode(value, { stream: true });
            chunks++;
          }
          if (!cancel) {
            r.tokens += (text.match(/data: \{/g) ?? []).length;
            if (!text.trimEnd().endsWith("data: [DONE]")) r.streamsWithoutDone++;
          }
        } else if (kind < 0.6) {
          const req = post(path, JSON.stringify(body));
          done = req.done;
          const res = await req.res;
          count(res.status);
          const j = (await res.json()) as { usage?: { completion_tokens: number } };
          r.tokens += j.usage?.completion_tokens ?? 0;
          if (res.status === 503) await backoff();
        } else {
          // malformed: broken JSON, wrong types, bad values
          const bad = [
            '{"prompt": "x",',
            JSON.stringify({ prompt: 42 }),
            JSON.stringify({ messages: "hi" }),
            JSON.stringify({ prompt: "x", max_tokens: 0 }),
            JSON.stringify({ prompt: "x", n: 1e6 }),
          ][Math.floor(next() * 5)];
          const req = post(next() < 0.5 ? "/v1/completions" : "/v1/chat/completions", bad);
          done = req.done;
          const res = await req.res;
          count(res.status);
          if (res.status !== 400) r.unexpected.push(`malformed request got ${res.status}`);
          await res.text();
        }
      } catch (e) {
        if ((e as Error).name !== "AbortError") r.unexpected.push(`client error: ${(e as Error).message}`);
      } finally {
        done();
      }
      if (r.rssWarmMiB === 0 && Date.now() >= warmAt) {
        r.rssWarmMiB = -1;
        collect();
        r.rssWarmMiB = process.memoryUsage().rss / 2 ** 20;
        r.heapWarmMiB = process.memoryUsage().heapUsed / 2 ** 20;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  clearInterval(watchdog);
  const idle = await Promise.race([
    server.engine.idle().then(() => true),
    new Promise<boolean>((res) => setTimeout(() => res(false), 30_000).unref()),
  ]);
  if (!idle) r.unexpected.push(`engine not idle 30 s after the run: ${JSON.stringify(server.engine.stats)}`);
  for (let i = 0; i < 100 && server.engine.stats.usedBlocks > 0; i++)
    await new Promise((res) => setTimeout(res, 20));
  const metrics = await (await fetch(`${url}/metrics`)).text();
  r.kvBlocksUsedAfter = Number(/^ryzanstein_kv_blocks_used (\S+)/m.exec(metrics)?.[1]);
  collect();
  r.rssEndMiB = process.memoryUsage().rss / 2 ** 20;
  r.heapEndMiB = process.memoryUsage().heapUsed / 2 ** 20;
  r.rssGrowth = r.rssWarmMiB ? r.rssEndMiB / r.rssWarmMiB - 1 : 0;
  return r;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const clients = Number(process.argv[2] ?? 64);
  const seconds = Number(process.argv[3] ?? 60);
  const server = await startServer({
    model: join(fixturesDir(), "models/stories260K.gguf"),
    port: 0,
    logLevel: "silent",
    maxSeqs: 16,
    maxQueue: 32,
    contextSize: 256,
  });
  const report = await runLoad(server, clients, seconds);
  await server.close();
  console.log(JSON.stringify(report, null, 2));
  const ok =
    report.unexpected.length === 0 && report.streamsWithoutDone === 0 && report.kvBlocksUsedAfter === 0;
  process.exit(ok ? 0 : 1);
}
