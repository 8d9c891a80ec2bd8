import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { KV_CACHE_TYPES, type KVCacheType, type ModelConfig, openModelFile } from "@ryzanstein/engine";
import { createTokenizerFromGGUF, type Tokenizer } from "@ryzanstein/tokenizers";
import type {
  BatchEngineOptions,
  EngineStats,
  FromWorker,
  RequestParams,
  TokenEvent,
  ToWorker,
} from "./protocol.js";

/** Callbacks of one submitted request. */
export interface RequestListener {
  /** A token (or the final event, with `finish` set). */
  onEvent(e: TokenEvent): void;
  /** The request failed or was refused (`code` QUEUE_FULL, CONTEXT_OVERFLOW, ...). */
  onError(code: string, message: string): void;
}

/** A submitted request. */
export interface RequestHandle {
  /** Request id. */
  readonly id: string;
  /** Cancels it; its KV blocks are freed at once (between steps). */
  cancel(): void;
}

/** The built worker script: beside this module in `dist/`, or in `dist/` when running from `src/` (tests). */
function workerUrl(): URL {
  const beside = new URL("./batch-worker.js", import.meta.url);
  return existsSync(fileURLToPath(beside)) ? beside : new URL("../dist/batch-worker.js", import.meta.url);
}

/**
 * Continuous batching over one model, hosted in a worker thread: the tokenizer stays on the
 * calling thread; scheduling, the batched forward pass and sampling run in the worker.
 */
export class BatchEngine {
  /** Model file. */
  readonly path: string;
  /** Hyper-parameters. */
  readonly config: ModelConfig;
  /** The model's tokenizer. */
  readonly tokenizer: Tokenizer;
  /** The model's chat template (`tokenizer.chat_template`), when it has one. */
  readonly chatTemplate: string | undefined;
  /** Positions one sequence may reach. */
  readonly contextSize: number;
  /** Largest prompt + completion a request may have (context, and what the KV pool holds). */
  readonly maxSequenceTokens: number;
  /** Backend name. */
  readonly backend: string;
  /** KV blocks, their size and element type. */
  readonly kv: { numBlocks: number; blockSize: number; kvType: KVCacheType };
  /** Latest counters from the worker. */
  stats: EngineStats;
  private readonly worker: Worker;
  private readonly listeners = new Map<string, RequestListener>();
  private readonly embeds = new Map<
    string,
    { resolve: (v: { data: Float32Array; promptTokens: number }) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  private failure: Error | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  private constructor(
    path: string,
    tokenizer: Tokenizer,
    chatTemplate: string | undefined,
    worker: Worker,
    ready: Extract<FromWorker, { type: "ready" }>,
  ) {
    this.path = path;
    this.tokenizer = tokenizer;
    this.chatTemplate = chatTemplate;
    this.worker = worker;
    this.config = ready.config;
    this.contextSize = ready.contextSize;
    this.maxSequenceTokens = ready.maxSequenceTokens;
    this.backend = ready.backend;
    this.kv = { numBlocks: ready.numBlocks, blockSize: ready.blockSize, kvType: ready.kvType };
    this.stats = {
      waiting: 0,
      running: 0,
      usedBlocks: 0,
      totalBlocks: ready.numBlocks,
      cachedBlocks: 0,
      queriedTokens: 0,
      hitTokens: 0,
      preemptions: 0,
      steps: 0,
    };
    worker.on("message", (m: FromWorker) => this.onMessage(m));
    const fail = (e: Error) => {
      this.failure = e;
      for (const [id, l] of this.listeners) {
        this.listeners.delete(id);
        l.onError("INTERNAL", e.message);
      }
      for (const [id, p] of this.embeds) {
        this.embeds.delete(id);
        p.reject(e);
      }
    };
    worker.on("error", fail);
    worker.on("exit", (code) =>
      fail(new RyzansteinError("NATIVE_ERROR", `the engine worker exited (code ${code})`)),
    );
  }

  /** Loads `path` in a new worker thread. */
  static async start(path: string, options: BatchEngineOptions = {}): Promise<BatchEngine> {
    if (options.kvType !== undefined && !KV_CACHE_TYPES.includes(options.kvType))
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `kvType must be one of ${KV_CACHE_TYPES.join(", ")}, got ${String(options.kvType)}`,
      );
    const gguf = openModelFile(path);
    const tokenizer = createTokenizerFromGGUF(gguf.metadata);
    const tpl: unknown = gguf.metadata["tokenizer.chat_template"];
    const chatTemplate = typeof tpl === "string" ? tpl : undefined;
    const w = new Worker(workerUrl());
    const ready = await new Promise<Extract<FromWorker, { type: "ready" }>>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === "ready") {
          w.off("message", onMessage);
          resolve(m);
        } else if (m.type === "error") {
          w.off("message", onMessage);
          void w.terminate();
          reject(new RyzansteinError("INVALID_ARGUMENT", m.message));
        }
      };
      w.on("message", onMessage);
      w.once("error", reject);
      w.postMessage({ type: "init", path, options } satisfies ToWorker);
    });
    return new BatchEngine(path, tokenizer, chatTemplate, w, ready);
  }

  /** Requests submitted and not finished. */
  get inflight(): number {
    return this.listeners.size + this.embeds.size;
  }

  /**
   * Submits a generation. Events arrive through `listener` until one has `finish` set (or onError).
   * `forkOf` names an earlier request with the same prompt (parallel sampling): this one then shares
   * its prompt's KV blocks, copy-on-write, instead of computing the prompt again.
   */
  submit(prompt: number[], params: RequestParams, listener: RequestListener, forkOf?: string): RequestHandle {
    const id = `r${this.nextId++}`;
    if (this.failure) {
      queueMicrotask(() => listener.onError("INTERNAL", (this.failure as Error).message));
      return { id, cancel: () => {} };
    }
    this.listeners.set(id, listener);
    this.post({ type: "add", id, prompt, params, forkOf });
    return {
      id,
      cancel: () => {
        if (this.listeners.delete(id)) this.post({ type: "cancel", id });
      },
    };
  }

  /** Mean-pooled, L2-normalised final hidden state of `prompt`. */
  embed(prompt: number[]): Promise<{ data: Float32Array; promptTokens: number }> {
    if (this.failure) return Promise.reject(this.failure);
    const id = `e${this.nextId++}`;
    return new Promise((resolve, reject) => {
      this.embeds.set(id, { resolve, reject });
      this.post({ type: "add", id, prompt, params: { maxTokens: 0, embed: true, temperature: 0 } });
    });
  }

  /** Resolves when no request is in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Stops the worker: it finishes its current step and exits. If it has not exited after
   * `graceMs` (default 10 s) it is terminated; requests still in flight then get an error.
   */
  async close(graceMs = 10_000): Promise<void> {
    if (this.failure) return;
    const exited = new Promise<true>((r) => this.worker.once("exit", () => r(true)));
    this.post({ type: "dispose" });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((r) => {
      timer = setTimeout(() => r(false), graceMs);
    });
    const inTime = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (!inTime) await this.worker.terminate();
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case "events":
        this.stats = m.stats;
        for (const e of m.events) {
          const l = this.listeners.get(e.id);
          if (!l) continue;
          if (e.finish) this.listeners.delete(e.id);
          l.onEvent(e);
        }
        break;
      case "embedding": {
        const p = this.embeds.get(m.id);
        this.embeds.delete(m.id);
        p?.resolve({ data: m.data, promptTokens: m.promptTokens });
        break;
      }
      case "rejected": {
        const l = this.listeners.get(m.id);
        this.listeners.delete(m.id);
        l?.onError(m.code, m.message);
        const p = this.embeds.get(m.id);
        this.embeds.delete(m.id);
        p?.reject(Object.assign(new Error(m.message), { code: m.code }));
        break;
      }
      case "error":
        break;
      case "ready":
        break;
    }
    if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
