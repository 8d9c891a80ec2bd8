// Throughput benchmark (never part of `npm test`): 1, 4, 8 and 16 concurrent streams of 128
// tokens on a ~110M-parameter random-weight Llama in Q4_0, through the HTTP server, with time to
// first token and inter-token latency percentiles; the prefix-cache TTFT benchmark (a 512-token
// shared prefix); and node-llama-cpp running 1 and 16 sequences in one context for comparison.
//
//   npm run bench -w packages/server          (RYZ_BENCH_THREADS=2 by default)
//   RYZ_BENCH_KV=q8_0 ...                     (the servers' KV cache type; default f16)
import { existsSync, mkdirSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGMLType } from "@ryzanstein/core-tensor";
import type { KVCacheType } from "@ryzanstein/engine";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { type RunningServer, startServer } from "../src/index.js";

const THREADS = Number(process.env.RYZ_BENCH_THREADS ?? 2);
const GEN = 128;
const PROMPT_LEN = 32;
/** KV cache element type of the servers (`RYZ_BENCH_KV`: f16, f32 or q8_0). */
const KV = (process.env.RYZ_BENCH_KV ?? "f16") as KVCacheType;
/** Stream counts to run (`RYZ_BENCH_STREAMS=16` for one, e.g. under a profiler). */
const STREAMS = (process.env.RYZ_BENCH_STREAMS ?? "1,4,8,16").split(",").map(Number);

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const median = (xs: number[]) => pct(xs, 50);

async function modelPath(): Promise<string> {
  const dir = join(tmpdir(), "ryzanstein-bench");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "random-110m-q4_0.gguf");
  if (!existsSync(path)) {
    console.error(`writing ${path} ...`);
    await writeRandomLlamaGGUF(path, {
      nLayers: 12,
      dim: 768,
      nHeads: 12,
      nKvHeads: 12,
      ffnDim: 2048,
      vocabSize: 32000,
      type: GGMLType.Q4_0,
      contextLength: 2048,
      seed: 7,
    });
  }
  return path;
}

/** Prompt token ids: BOS then ids from the byte range onwards, varied per stream. */
const promptIds = (i: number, len = PROMPT_LEN) => [
  1,
  ...Array.from({ length: len - 1 }, (_, j) => 300 + ((i * 997 + j * 31) % 20000)),
];

interface StreamStats {
  ttft: number;
  itl: number[];
  tokens: number;
  text: string;
}

/**
 * One streamed completion through `node:http` with its own SSE parsing. The clients share the
 * server's two cores, so they are kept lean: `fetch` (undici and web streams) cost about twice the
 * main-thread CPU per streamed token and kept V8's GC threads busy, time taken from the server.
 */
function stream(url: string, prompt: number[], maxTokens: number): Promise<StreamStats> {
  const body = JSON.stringify({
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
    stream: true,
  });
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ttft = -1;
    let last = 0;
    const itl: number[] = [];
    let tokens = 0;
    let text = "";
    let buf = "";
    const req = request(
      `${url}/v1/completions`,
      {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        res.setEncoding("utf8");
        if (res.statusCode !== 200) {
          let err = "";
          res.on("data", (c: string) => {
            err += c;
          });
          res.on("end", () => reject(new Error(`status ${res.statusCode}: ${err}`)));
          return;
        }
        res.on("data", (chunk: string) => {
          buf += chunk;
          let at = buf.indexOf("\n\n");
          while (at >= 0) {
            const ev = buf.slice(0, at);
            buf = buf.slice(at + 2);
            at = buf.indexOf("\n\n");
            if (!ev.startsWith("data: {")) continue;
            const t = performance.now();
            text += (JSON.parse(ev.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? "";
            tokens++;
            if (ttft < 0) ttft = t - t0;
            else itl.push(t - last);
            last = t;
          }
        });
        res.on("end", () => resolve({ ttft, itl, tokens, text }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function ours(server: RunningServer) {
  const rows: {
    c: number;
    tps: number;
    ttftP50: number;
    ttftP90: number;
    itlP50: number;
    itlP90: number;
    itlP99: number;
  }[] = [];
  await stream(server.url, promptIds(999), 8); // warm-up
  for (const c of STREAMS) {
    const t0 = performance.now();
    const all = await Promise.all(
      Array.from({ length: c }, (_, i) => stream(server.url, promptIds(i + c * 100), GEN)),
    );
    const wall = (performance.now() - t0) / 1000;
    const tokens = all.reduce((s, x) => s + x.tokens, 0);
    const itl = all.flatMap((x) => x.itl);
    rows.push({
      c,
      tps: tokens / wall,
      ttftP50: median(all.map((x) => x.ttft)),
      ttftP90: pct(
        all.map((x) => x.ttft),
        90,
      ),
      itlP50: median(itl),
      itlP90: pct(itl, 90),
      itlP99: pct(itl, 99),
    });
    console.error(`ours c=${c}: ${(tokens / wall).toFixed(1)} tok/s`);
  }
  return rows;
}

/**
 * Prefix cache: a 512-token prompt, then one sharing its 512 tokens with a different suffix; the
 * second's greedy output is compared with the same request on a fresh server (`freshText`).
 */
async function prefix(server: RunningServer) {
  const shared = promptIds(4242, 512);
  const a = await stream(server.url, [...shared, 500, 501, 502, 503], 16);
  const b = await stream(server.url, [...shared, 900, 901, 902, 903], 16);
  return { first: a.ttft, second: b.ttft, ratio: b.ttft / a.ttft, text: b.text };
}

const freshText = async (server: RunningServer) =>
  (await stream(server.url, [...promptIds(4242, 512), 900, 901, 902, 903], 16)).text;

/**
 * node-llama-cpp running `c` sequences of one context: every sequence is taken from the context
 * first, then all are evaluated at once, so node-llama-cpp queues the sequences' pending
 * evaluations and dispatches them as one llama.cpp decode per step (its default batching:
 * dispatchSchedule "nextCycle", and at once when every sequence has queued).
 */
async function llamaCpp(path: string) {
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const llama = await getLlama({
    gpu: false,
    build: "never",
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
  });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const out: { c: number; tps: number; ttftP50: number }[] = [];
  for (const c of STREAMS.includes(1) ? [1, 16] : STREAMS) {
    const ctx2 = await model.createContext({
      sequences: c,
      contextSize: c * (PROMPT_LEN + GEN + 64),
      threads: THREADS,
      batchSize: 512,
      batching: { dispatchSchedule: "nextCycle", itemPrioritizationStrategy: "maximumParallelism" },
    });
    const seqs = Array.from({ length: c }, () => ctx2.getSequence());
    const t0 = performance.now();
    const runs = await Promise.all(
      seqs.map(async (seq, i) => {
        let n = 0;
        let ttft = 0;
        for await (const _t of seq.evaluate(promptIds(i + c * 100) as never, { temperature: 0 })) {
          if (n === 0) ttft = performance.now() - t0;
          if (++n >= GEN) break;
        }
        return { n, ttft };
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    out.push({
      c,
      tps: runs.reduce((s, x) => s + x.n, 0) / wall,
      ttftP50: median(runs.map((r) => r.ttft)),
    });
    console.error(`llama.cpp c=${c}: ${out[out.length - 1].tps.toFixed(1)} tok/s`);
    await ctx2.dispose();
  }
  await model.dispose();
  await llama.dispose();
  const one = out.find((r) => r.c === 1);
  const many = out.find((r) => r.c === 16);
  if (one && many && many.tps <= one.tps)
    console.error(
      "warning: node-llama-cpp's 16-sequence aggregate is not above its single sequence: it did not batch",
    );
  return out;
}

const path = await modelPath();
if (process.env.RYZ_BENCH_ONLY_PEER === "1") {
  // The peer alone (when the machine is too busy to run both in one go).
  for (const r of await llamaCpp(path))
    console.log(
      `node-llama-cpp, ${r.c} sequences: ${r.tps.toFixed(1)} tok/s, TTFT p50 ${r.ttftP50.toFixed(0)} ms`,
    );
  process.exit(0);
}
const server = await startServer({
  model: path,
  port: 0,
  logLevel: "silent",
  threads: THREADS,
  maxSeqs: 16,
  maxBatchTokens: 256,
  contextSize: 1024,
  numBlocks: 16 * 64,
  kvType: KV,
});
const REPS = Number(process.env.RYZ_BENCH_REPS ?? 1);
const sweeps: Awaited<ReturnType<typeof ours>>[] = [];
for (let r = 0; r < REPS; r++) sweeps.push(await ours(server));
// Per stream count, the sweep with the median throughput (its latencies come with it).
const rows = sweeps[0].map((_, i) => {
  const byTps = sweeps.map((s) => s[i]).sort((a, b) => a.tps - b.tps);
  return byTps[Math.floor(byTps.length / 2)];
});
const pre = await prefix(server);
await server.close();
const fresh = await startServer({
  model: path,
  port: 0,
  logLevel: "silent",
  threads: THREADS,
  contextSize: 1024,
  kvType: KV,
});
const freshOut = await freshText(fresh);
await fresh.close();
const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "–");
const table = (peer: { c: number; tps: number; ttftP50: number }[]) => {
  console.log(
    `\nRandom Llama 110M Q4_0 (12 layers, d 768, ff 2048, vocab 32000), ${THREADS} threads, ${KV} KV cache, ${GEN} tokens per stream, prompt ${PROMPT_LEN}\n`,
  );
  console.log(
    "| streams | ours tok/s | × single | TTFT p50 / p90 ms | ITL p50 / p90 / p99 ms | node-llama-cpp tok/s (TTFT p50 ms) |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    const p = peer.find((x) => x.c === r.c);
    console.log(
      `| ${r.c} | ${f(r.tps)} | ${(r.tps / rows[0].tps).toFixed(2)} | ${f(r.ttftP50)} / ${f(r.ttftP90)} | ${f(r.itlP50)} / ${f(r.itlP90)} / ${f(r.itlP99)} | ${p ? `${f(p.tps)} (${p.ttftP50.toFixed(0)})` : "–"} |`,
    );
  }
  console.log(
    `\nprefix cache (512-token shared prefix): TTFT first ${f(pre.first)} ms, second ${f(pre.second)} ms (${(pre.ratio * 100).toFixed(0)}%); greedy output ${pre.text === freshOut ? "equals" : "DIFFERS from"} a fresh server's`,
  );
  if (REPS > 1)
    console.log(
      `(${REPS} sweeps; tok/s per sweep: ${STREAMS.map((c, i) => `${c}: ${sweeps.map((s) => s[i].tps.toFixed(0)).join("/")}`).join(", ")})`,
    );
};
table([]);
if (process.env.RYZ_BENCH_PEER !== "0") {
  try {
    table(await llamaCpp(path));
  } catch (e) {
    console.error(`node-llama-cpp unavailable: ${(e as Error).message}`);
  }
}
