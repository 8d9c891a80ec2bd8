// Entry point of the batched engine's worker thread: the scheduler decides each step, the
// BatchRunner executes it, samplers pick tokens, and events go back to the main thread in one
// message per step. Messages (add, cancel) are handled between steps.
import { TextDecoder } from "node:util";
import { parentPort } from "node:worker_threads";
import { Scheduler } from "@ryzanstein/batching";
import { type Backend, ReferenceBackend } from "@ryzanstein/core-tensor";
import {
  BatchRunner,
  type BatchSequence,
  Model,
  openModelFile,
  PagedKvCache,
  readLlamaWeights,
  readModelConfig,
  Sampler,
  topLogprobs,
} from "@ryzanstein/engine";
import { NativeBackend } from "@ryzanstein/kernels-native";
import { createTokenizerFromGGUF, type Tokenizer } from "@ryzanstein/tokenizers";
import type {
  BatchEngineOptions,
  EngineStats,
  FromWorker,
  RequestParams,
  TokenEvent,
  ToWorker,
} from "./protocol.js";

const port = parentPort;
if (!port) throw new Error("the batch worker must run in a worker thread");
const send = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer ?? []);

/** Per-request state that lives beside the scheduler's: sampling and text. */
interface Live {
  params: RequestParams;
  promptTokens: number;
  generated: number;
  sampler: Sampler;
  decoder: TextDecoder;
  pending: string;
  stops: string[];
  embedSum?: Float64Array;
}

let engine:
  | {
      tokenizer: Tokenizer;
      model: Model;
      cache: PagedKvCache;
      runner: BatchRunner;
      scheduler: Scheduler;
    }
  | undefined;
const live = new Map<string, Live>();
let looping = false;

function init(path: string, o: BatchEngineOptions): void {
  const gguf = openModelFile(path);
  const config = readModelConfig(gguf);
  const tokenizer = createTokenizerFromGGUF(gguf.metadata);
  const backend: Backend =
    (o.backend ?? "native") === "reference"
      ? new ReferenceBackend()
      : new NativeBackend({ threads: o.threads });
  const model = new Model(config, readLlamaWeights(gguf, config), backend);
  const contextSize = o.contextSize ?? Math.min(config.contextLength, 4096);
  const blockSize = o.blockSize ?? 16;
  const maxSeqs = o.maxSeqs ?? 8;
  const maxBatchTokens = Math.max(o.maxBatchTokens ?? 256, maxSeqs);
  const kvType = o.kvType ?? "f16";
  const perBlock = PagedKvCache.bytesPerBlock(model, blockSize, kvType);
  const numBlocks =
    o.numBlocks ??
    (o.kvMemoryBytes !== undefined
      ? Math.floor(o.kvMemoryBytes / perBlock)
      : Math.ceil(contextSize / blockSize) * maxSeqs);
  if (!(numBlocks >= 1)) throw new Error(`the KV cache holds no block (one block needs ${perBlock} bytes)`);
  const cache = new PagedKvCache(model, numBlocks, blockSize, kvType);
  const runner = new BatchRunner(model, cache, maxBatchTokens, maxSeqs, contextSize);
  const scheduler = new Scheduler({
    numBlocks,
    blockSize,
    maxBatchTokens,
    maxSeqs,
    maxContext: contextSize,
    maxQueue: o.maxQueue ?? 64,
    prefixCaching: o.prefixCaching ?? true,
  });
  engine = { tokenizer, model, cache, runner, scheduler };
  send({
    type: "ready",
    config,
    contextSize,
    backend: backend.name,
    numBlocks,
    blockSize,
    kvType,
    maxSequenceTokens: scheduler.maxSequenceTokens,
  });
}

function add(id: string, prompt: number[], params: RequestParams, forkOf?: string): void {
  if (!engine) throw new Error("model not loaded");
  try {
    const sampler = new Sampler(params);
    for (const t of prompt) sampler.accept(t);
    const accepted = engine.scheduler.add({
      id,
      prompt,
      maxTokens: params.embed ? 0 : params.maxTokens,
      forkOf,
    });
    if (!accepted) {
      send({ type: "rejected", id, code: "QUEUE_FULL", message: "the request queue is full" });
      return;
    }
    live.set(id, {
      params,
      promptTokens: prompt.length,
      generated: 0,
      sampler,
      decoder: new TextDecoder("utf-8", { fatal: false }),
      pending: "",
      stops: (params.stop ?? []).filter((s) => s.length > 0),
      embedSum: params.embed ? new Float64Array(engine.model.config.dim) : undefined,
    });
    kick();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    send({ type: "rejected", id, code: err.code ?? "INVALID_ARGUMENT", message: err.message ?? String(e) });
  }
}

/** Longest suffix of `text` that is a proper prefix of some stop string. */
function pendingStopPrefix(text: string, stops: string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let len = Math.min(s.length - 1, text.length); len > best; len--) {
      if (text.endsWith(s.slice(0, len))) {
        best = len;
        break;
      }
    }
  }
  return best;
}

let greedyIds = new Int32Array(0);

/**
 * The argmax of every logits row in one backend call when some sampled request is greedy (its
 * sampler would scan a vocabulary-sized row in JS per token), else undefined.
 */
function greedyTokens(
  backend: Backend,
  logits: Float32Array,
  vocab: number,
  seqs: readonly { id: string }[],
): Int32Array | undefined {
  const rows = logits.length / vocab;
  if (!backend.argmax || rows === 0 || !seqs.some((s) => live.get(s.id)?.sampler.greedy)) return undefined;
  if (greedyIds.length < rows) greedyIds = new Int32Array(rows);
  backend.argmax(greedyIds, logits, rows, vocab);
  return greedyIds;
}

let stepsRun = 0;

function stats(scheduler: Scheduler, steps: number): EngineStats {
  stepsRun = steps;
  const st = scheduler.pool.stats();
  return {
    waiting: scheduler.queueDepth,
    running: scheduler.runningCount,
    usedBlocks: st.used,
    totalBlocks: st.total,
    cachedBlocks: st.cached,
    queriedTokens: st.queriedTokens,
    hitTokens: st.hitTokens,
    preemptions: scheduler.preemptionCount,
    steps,
  };
}

function kick(): void {
  if (looping) return;
  looping = true;
  setImmediate(step);
}

/** One scheduler step: plan, copy-on-write, forward, sample, update, report. */
function step(): void {
  const e = engine;
  if (!e?.scheduler.hasWork()) {
    looping = false;
    // Report the idle state (blocks back to zero after cancels).
    if (e) send({ type: "events", events: [], stats: stats(e.scheduler, stepsRun) });
    return;
  }
  const { scheduler, runner, cache, tokenizer, model } = e;
  const vocab = model.config.vocabSize;
  const events: TokenEvent[] = [];
  const plan = scheduler.schedule();
  for (const c of plan.copies) cache.copyBlock(c.src, c.dst);
  const batch: BatchSequence[] = plan.seqs.map((s) => {
    const embed = live.get(s.id)?.params.embed ?? false;
    return {
      tokens: s.tokens,
      start: s.start,
      blockTable: s.blockTable,
      logits: s.sample && !embed,
      hidden: embed,
    };
  });
  let out: ReturnType<BatchRunner["forward"]>;
  try {
    out = runner.forward(batch);
  } catch (err) {
    // A failed step must not take the server down: fail the requests in it.
    for (const s of plan.seqs) {
      scheduler.cancel(s.id);
      live.delete(s.id);
      send({ type: "rejected", id: s.id, code: "INTERNAL", message: (err as Error).message });
    }
    scheduler.update({ sampled: [] });
    setImmediate(step);
    return;
  }

  const sampled: { id: string; token: number; row: Float32Array }[] = [];
  const greedy = greedyTokens(model.backend, out.logits, vocab, plan.seqs);
  let row = 0;
  let hid = 0;
  for (const s of plan.seqs) {
    const r = live.get(s.id);
    if (r?.embedSum) {
      const h = out.hidden[hid++];
      const dim = model.config.dim;
      for (let i = 0; i < s.tokens.length; i++) for (let d = 0; d < dim; d++) r.embedSum[d] += h[i * dim + d];
    }
    if (!s.sample || r?.embedSum) continue;
    const logits = out.logits.subarray(row * vocab, (row + 1) * vocab);
    row++;
    if (!r) continue;
    let token: number;
    if (greedy && r.sampler.greedy) {
      token = greedy[row - 1];
      r.sampler.accept(token);
    } else {
      token = r.sampler.sample(logits);
    }
    sampled.push({ id: s.id, token, row: logits });
  }
  const logprobRows = new Map<string, { lp: number; top?: TokenEvent["top"] }>();
  for (const s of sampled) {
    const r = live.get(s.id) as Live;
    const k = r.params.topLogprobs ?? 0;
    if (r.params.logprobs || k > 0) {
      const lp = topLogprobs(s.row, k, s.token);
      logprobRows.set(s.id, { lp: lp.chosen, top: k > 0 ? lp.top : undefined });
    }
  }
  const finished = scheduler.update({ sampled: sampled.map(({ id, token }) => ({ id, token })) });
  const endedByLength = new Set(finished.map((f) => f.id));

  for (const f of finished) {
    const r = live.get(f.id);
    if (f.reason === "prompt" && r?.embedSum) {
      const v = new Float32Array(r.embedSum.length);
      let norm = 0;
      for (let d = 0; d < v.length; d++) norm += (r.embedSum[d] / r.promptTokens) ** 2;
      norm = Math.sqrt(norm) || 1;
      for (let d = 0; d < v.length; d++) v[d] = r.embedSum[d] / r.promptTokens / norm;
      live.delete(f.id);
      send({ type: "embedding", id: f.id, data: v, promptTokens: r.promptTokens }, [v.buffer as ArrayBuffer]);
    }
  }

  for (const s of sampled) {
    const r = live.get(s.id) as Live;
    r.generated++;
    const lp = logprobRows.get(s.id);
    const base = { id: s.id, token: s.token, ...(lp ? { logprob: lp.lp, top: lp.top } : {}) };
    const done = (reason: "stop" | "length", text: string): TokenEvent => ({
      ...base,
      text,
      finish: { reason, promptTokens: r.promptTokens, completionTokens: r.generated },
    });
    if (!r.params.ignoreEos && tokenizer.isEog(s.token)) {
      events.push(done("stop", r.pending + r.decoder.decode()));
      scheduler.finish(s.id);
      live.delete(s.id);
      continue;
    }
    r.pending += r.decoder.decode(tokenizer.tokenToPiece(s.token), { stream: true });
    let text = r.pending;
    let stopped = false;
    if (r.stops.length) {
      const hits = r.stops.map((x) => r.pending.indexOf(x)).filter((i) => i >= 0);
      if (hits.length) {
        text = r.pending.slice(0, Math.min(...hits));
        stopped = true;
      } else {
        text = r.pending.slice(0, r.pending.length - pendingStopPrefix(r.pending, r.stops));
      }
    }
    r.pending = r.pending.slice(text.length);
    if (stopped) {
      events.push(done("stop", text));
      scheduler.finish(s.id);
      live.delete(s.id);
    } else if (endedByLength.has(s.id)) {
      events.push(done("length", text + r.pending + r.decoder.decode()));
      live.delete(s.id);
    } else {
      events.push({ ...base, text });
    }
  }

  send({ type: "events", events, stats: stats(scheduler, plan.step + 1) });
  setImmediate(step);
}

port.on("message", (msg: ToWorker) => {
  switch (msg.type) {
    case "init":
      try {
        init(msg.path, msg.options);
      } catch (e) {
        send({ type: "error", message: (e as Error).message });
      }
      return;
    case "add":
      add(msg.id, msg.prompt, msg.params, msg.forkOf);
      return;
    case "cancel":
      engine?.scheduler.cancel(msg.id);
      live.delete(msg.id);
      if (engine && !looping) send({ type: "events", events: [], stats: stats(engine.scheduler, stepsRun) });
      return;
    case "dispose":
      engine?.model.backend.dispose?.();
      engine = undefined;
      port.close();
      return;
  }
});
