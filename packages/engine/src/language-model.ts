import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { createTokenizerFromGGUF, type Tokenizer } from "@ryzanstein/tokenizers";
import type { ModelConfig } from "./config.js";
import type { GeneratedToken, GenerateOptions, GenerationResult } from "./generate.js";
import { fromWireError, type WorkerReply, type WorkerRequest } from "./protocol.js";
import { type LoadProgress, ModelSession, openModelFile, type SessionOptions } from "./session.js";

/** Options of {@link loadModel}. */
export interface LoadModelOptions extends SessionOptions {
  /**
   * Run the forward pass in a worker thread (default) so the caller's event loop stays responsive.
   * `false` runs it on the calling thread between awaits (useful for debugging and tests).
   */
  worker?: boolean;
  /** Called as loading progresses. */
  onProgress?: (p: LoadProgress) => void;
}

/** Options of {@link LanguageModel.generate}. */
export interface GenerateRequest extends GenerateOptions {
  /** Cancels the generation; the iterator then ends with finish reason `aborted`. */
  signal?: AbortSignal;
  /** Prepend BOS to a text prompt (default: the model's `add_bos_token` rule). */
  addBos?: boolean;
}

/** How a {@link LanguageModel} reaches its session: a worker thread or the current thread. */
interface Driver {
  generate(
    prompt: number[],
    options: GenerateOptions,
    abort: SharedArrayBuffer,
    onToken: (t: GeneratedToken) => void,
  ): Promise<GenerationResult>;
  logits(tokens: number[]): Promise<Float32Array>;
  dispose(): Promise<void>;
}

class InProcessDriver implements Driver {
  private queue: Promise<unknown> = Promise.resolve();
  constructor(readonly session: ModelSession) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  generate(
    prompt: number[],
    options: GenerateOptions,
    abort: SharedArrayBuffer,
    onToken: (t: GeneratedToken) => void,
  ) {
    const flag = new Int32Array(abort);
    return this.serial(async () => {
      const gen = this.session.generate(prompt, options, () => Atomics.load(flag, 0) !== 0);
      let step = gen.next();
      while (!step.done) {
        onToken(step.value);
        await new Promise((r) => setImmediate(r));
        step = gen.next();
      }
      return step.value;
    });
  }

  logits(tokens: number[]) {
    return this.serial(async () => this.session.logits(tokens));
  }

  async dispose() {
    await this.queue;
    this.session.dispose();
  }
}

class WorkerDriver implements Driver {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { onToken?: (t: GeneratedToken) => void; resolve: (v: never) => void; reject: (e: Error) => void }
  >();
  private failure: Error | undefined;

  constructor(private readonly worker: Worker) {
    worker.on("message", (m: WorkerReply) => {
      if (m.type === "token") this.pending.get(m.id)?.onToken?.(m.token);
      else if (m.type === "done" || m.type === "logits" || (m.type === "error" && m.id !== undefined)) {
        const p = this.pending.get(m.id as number);
        if (!p) return;
        this.pending.delete(m.id as number);
        if (m.type === "error") p.reject(fromWireError(m.error));
        else p.resolve((m.type === "done" ? m.result : m.data) as never);
      }
    });
    const fail = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) =>
      fail(new RyzansteinError("NATIVE_ERROR", `the engine worker exited (code ${code})`)),
    );
  }

  private call<T>(make: (id: number) => WorkerRequest, onToken?: (t: GeneratedToken) => void): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { onToken, resolve: resolve as (v: never) => void, reject });
      this.worker.postMessage(make(id));
    });
  }

  generate(
    prompt: number[],
    options: GenerateOptions,
    abort: SharedArrayBuffer,
    onToken: (t: GeneratedToken) => void,
  ) {
    return this.call<GenerationResult>((id) => ({ type: "generate", id, prompt, options, abort }), onToken);
  }

  logits(tokens: number[]) {
    return this.call<Float32Array>((id) => ({ type: "logits", id, tokens }));
  }

  async dispose() {
    if (this.failure) return;
    const exited = new Promise((r) => this.worker.once("exit", r));
    this.worker.postMessage({ type: "dispose" } satisfies WorkerRequest);
    await exited;
  }
}

/** One generation: an async iterator of tokens, plus the summary when it ends. */
export class Generation implements AsyncIterable<GeneratedToken> {
  /** The prompt's token ids. */
  readonly promptTokens: number[];
  /** Resolves when generation ends (after the last token is delivered). */
  readonly result: Promise<GenerationResult>;
  private readonly buffered: GeneratedToken[] = [];
  private wake: (() => void) | undefined;
  private finished = false;
  private error: unknown;

  /** @internal */
  constructor(
    promptTokens: number[],
    start: (onToken: (t: GeneratedToken) => void) => Promise<GenerationResult>,
  ) {
    this.promptTokens = promptTokens;
    this.result = start((t) => {
      this.buffered.push(t);
      this.wake?.();
    });
    this.result.then(
      () => this.finish(undefined),
      (e) => this.finish(e),
    );
  }

  private finish(error: unknown): void {
    this.finished = true;
    this.error = error;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GeneratedToken> {
    for (;;) {
      const next = this.buffered.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.finished) {
        if (this.error) throw this.error;
        return;
      }
      await new Promise<void>((r) => {
        this.wake = r;
      });
      this.wake = undefined;
    }
  }

  /** Collects the whole text and the summary. */
  async text(): Promise<{ text: string; tokens: number[]; result: GenerationResult }> {
    let text = "";
    const tokens: number[] = [];
    for await (const t of this) {
      text += t.text;
      tokens.push(t.token);
    }
    const result = await this.result;
    return { text: text + result.text, tokens, result };
  }
}

/**
 * A loaded model: tokenizer on the calling thread, forward pass in a worker (by default).
 * Generations run one at a time, in call order; a prompt extending the previous one reuses its
 * cached prefix.
 */
export class LanguageModel {
  /** Path of the model file. */
  readonly path: string;
  /** Hyper-parameters. */
  readonly config: ModelConfig;
  /** The model's tokenizer. */
  readonly tokenizer: Tokenizer;
  /** KV cache positions. */
  readonly contextSize: number;
  /** Backend name (`native-avx2`, `reference`, ...). */
  readonly backend: string;
  private readonly driver: Driver;

  /** @internal Use {@link loadModel}. */
  constructor(init: {
    path: string;
    config: ModelConfig;
    tokenizer: Tokenizer;
    contextSize: number;
    backend: string;
    driver: Driver;
  }) {
    this.path = init.path;
    this.config = init.config;
    this.tokenizer = init.tokenizer;
    this.contextSize = init.contextSize;
    this.backend = init.backend;
    this.driver = init.driver;
  }

  /** Token ids of `text`; BOS per the model's rule unless `addBos` says otherwise. Special tokens are parsed. */
  tokenize(text: string, options: { addBos?: boolean; special?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, {
      addBos: options.addBos ?? this.tokenizer.addBos,
      parseSpecial: options.special ?? true,
    });
  }

  /** Text of token ids. */
  detokenize(ids: number[]): string {
    return this.tokenizer.decode(ids);
  }

  /**
   * Generates a continuation of `prompt` (text, or token ids used as given). An empty text prompt
   * starts from BOS alone.
   */
  generate(prompt: string | number[], request: GenerateRequest = {}): Generation {
    const { signal, addBos, ...options } = request;
    const ids = typeof prompt === "string" ? this.tokenize(prompt, { addBos }) : [...prompt];
    if (ids.length === 0) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        "the prompt is empty and the model has no BOS token to start from",
      );
    }
    const abort = new SharedArrayBuffer(4);
    const flag = new Int32Array(abort);
    const onAbort = () => Atomics.store(flag, 0, 1);
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    return new Generation(ids, (onToken) =>
      this.driver
        .generate(ids, options, abort, onToken)
        .finally(() => signal?.removeEventListener("abort", onAbort)),
    );
  }

  /** Logits of every position of `tokens` run as a fresh sequence: `[tokens.length, vocab]`. */
  logits(tokens: number[]): Promise<Float32Array> {
    return this.driver.logits(tokens);
  }

  /** Stops the worker and frees the model. */
  dispose(): Promise<void> {
    return this.driver.dispose();
  }
}

/** The built worker script: beside this module in `dist/`, or in `dist/` when running from `src/` (tests). */
function workerUrl(): URL {
  const beside = new URL("./worker.js", import.meta.url);
  return existsSync(fileURLToPath(beside)) ? beside : new URL("../dist/worker.js", import.meta.url);
}

/** Loads a GGUF model. The forward pass runs in a worker thread unless `worker: false`. */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LanguageModel> {
  const { worker = true, onProgress, ...sessionOptions } = options;
  if (!worker) {
    const session = new ModelSession(openModelFile(path), sessionOptions, onProgress);
    return new LanguageModel({
      path,
      config: session.config,
      tokenizer: session.tokenizer,
      contextSize: session.contextSize,
      backend: session.backendName,
      driver: new InProcessDriver(session),
    });
  }
  // The tokenizer lives on this thread too; the header pages are all it touches of the mapping.
  const tokenizer = createTokenizerFromGGUF(openModelFile(path).metadata);
  const w = new Worker(workerUrl());
  const ready = await new Promise<Extract<WorkerReply, { type: "ready" }>>((resolve, reject) => {
    const onMessage = (m: WorkerReply) => {
      if (m.type === "progress")
        onProgress?.({ phase: m.phase as LoadProgress["phase"], fraction: m.fraction });
      else if (m.type === "ready") {
        w.off("message", onMessage);
        resolve(m);
      } else if (m.type === "error") {
        w.off("message", onMessage);
        void w.terminate();
        reject(fromWireError(m.error));
      }
    };
    w.on("message", onMessage);
    w.once("error", reject);
    w.postMessage({ type: "init", path, options: sessionOptions } satisfies WorkerRequest);
  });
  return new LanguageModel({
    path,
    config: ready.config,
    tokenizer,
    contextSize: ready.contextSize,
    backend: ready.backend,
    driver: new WorkerDriver(w),
  });
}
