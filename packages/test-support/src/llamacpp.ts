/**
 * The llama.cpp peer: a thin wrapper over node-llama-cpp (prebuilt llama.cpp, CPU only) that our tests and
 * benchmarks use as the reference to compare the engine with.
 *
 * node-llama-cpp is ESM-only and a devDependency of this private package, so it is loaded with a dynamic
 * `import()` inside functions (the CJS build keeps working) and only its types are imported statically.
 * Nothing is built or downloaded at run time: `build: "never"`, `skipDownload: true`, `gpu: false`.
 *
 * Caveat: before loading its binary, node-llama-cpp forks a child process that re-runs the parent's `execArgv`;
 * under `node -e`/`--input-type` that child fails and `getLlama` throws `NoBinaryFoundError`. Run from a file.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Llama, LlamaLogLevel, LlamaModel, Token } from "node-llama-cpp";

/** One greedy step recorded by {@link llamaCppGreedy}. */
export interface LlamaCppStep {
  /** The token chosen at this step (argmax of the logits; llama.cpp's greedy sampler). */
  token: number;
  /** The `topK` most likely tokens, most likely first, with natural-log probabilities of the full softmax (T = 1). */
  top: Array<{ token: number; logprob: number }>;
  /** Log-probability of the best token minus that of the second best (≥ 0; `Infinity` for a vocabulary of 1). */
  top2Gap: number;
}

/** What {@link llamaCppGreedy} returns: exactly one entry per requested step. */
export interface LlamaCppTrace {
  /** The generated steps, in order. */
  steps: LlamaCppStep[];
}

/** Options of {@link llamaCppGreedy}. */
export interface LlamaCppGreedyOptions {
  /** How many top tokens to record per step (default 10). */
  topK?: number;
  /** CPU threads for evaluation, used exactly (default 2). */
  threads?: number;
  /**
   * Context size in tokens (default: `max(512, prompt + steps)` rounded up to a multiple of 256). It must hold the
   * prompt and every generated token: the trace is never computed across a context shift.
   */
  contextSize?: number;
  /** A GGUF LoRA adapter to apply (scale 1), loaded onto the context. */
  lora?: string;
}

/** Options of {@link llamaCppTokenize}. */
export interface LlamaCppTokenizeOptions {
  /** Prepend the model's BOS token (default false). Throws if the model has none. */
  addBos?: boolean;
  /** Parse special-token text such as `<s>` into the special tokens (default false: plain text). */
  special?: boolean;
}

/** Options of {@link llamaCppDetokenize}. */
export interface LlamaCppDetokenizeOptions {
  /** Render special tokens (BOS, EOS, …) as their text instead of dropping them (default false). */
  special?: boolean;
  /** Tokens that precede `tokens`, so that the text is rendered as a continuation of them (SentencePiece spaces). */
  lastTokens?: number[];
}

/** Result of {@link llamaCppLoadCheck}. */
export type LlamaCppLoadResult = { ok: true } | { ok: false; error: string };

const DEFAULT_TOP_K = 10;
const DEFAULT_THREADS = 2;
const DEFAULT_BATCH_SIZE = 512;

/** Warnings llama.cpp prints for files that are fine (stories260K has unset optional special-token ids). */
const BENIGN_LOG_PATTERNS: RegExp[] = [/bad special token: .* using default id -1/];

let llamaPromise: Promise<Llama> | undefined;
/** Whether a Llama instance was already created (and maybe disposed) in this process. */
let llamaCreatedBefore = false;
const modelPromises = new Map<string, Promise<LlamaModel>>();

/**
 * The monorepo root: the nearest ancestor directory (of this module, then of the working directory) holding `nx.json`.
 *
 * @throws if no such directory exists.
 */
export function findRepoRoot(): string {
  const starts: string[] = [];
  try {
    starts.push(dirname(fileURLToPath(import.meta.url)));
  } catch {
    // import.meta.url may be unavailable in unusual loaders; fall back to the working directory.
  }
  starts.push(process.cwd());
  for (const start of starts) {
    let dir = resolve(start);
    for (;;) {
      if (existsSync(resolve(dir, "nx.json"))) return dir;
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  throw new Error(`findRepoRoot: no directory with nx.json above ${starts.join(" or ")}`);
}

/** The shared, read-only test fixtures directory: `<repoRoot>/../shared/fixtures` (never copied into the repo). */
export function fixturesDir(): string {
  return resolve(findRepoRoot(), "../shared/fixtures");
}

async function loadNodeLlamaCpp(): Promise<typeof import("node-llama-cpp")> {
  return import("node-llama-cpp");
}

/** Collectors of llama.cpp warnings/errors while a model loads (its failure message alone is "Failed to load model"). */
const logCaptures = new Set<{ lines: string[]; quiet: boolean }>();

function logToConsole(level: LlamaLogLevel, message: string): void {
  const text = message.trimEnd();
  if (text === "" || BENIGN_LOG_PATTERNS.some((pattern) => pattern.test(text))) return;
  const isError = level === "error" || level === "fatal";
  if (!isError && level !== "warn") return;
  let quiet = false;
  for (const capture of logCaptures) {
    capture.lines.push(text);
    quiet ||= capture.quiet;
  }
  if (quiet) return;
  if (isError) console.error(`[llama.cpp] ${text}`);
  else console.warn(`[llama.cpp] ${text}`);
}

/** Runs `fn`, appending the llama.cpp warnings and errors logged meanwhile to its error; `quiet` keeps them off the console. */
async function withLoadLogs<T>(quiet: boolean, fn: () => Promise<T>): Promise<T> {
  const capture = { lines: [] as string[], quiet };
  logCaptures.add(capture);
  try {
    return await fn();
  } catch (error) {
    // Native logs reach JS through a thread-safe function: let the queued ones arrive before reading them.
    await new Promise((resolveImmediate) => setImmediate(resolveImmediate));
    const message = error instanceof Error ? error.message : String(error);
    const details = [...new Set(capture.lines)].join("; ");
    throw new Error(details === "" ? message : `${message} (${details})`, { cause: error });
  } finally {
    logCaptures.delete(capture);
  }
}

/** The process-wide Llama instance: prebuilt CPU binary, no build, no download, warnings and errors only. */
async function getLlamaInstance(): Promise<Llama> {
  if (llamaPromise === undefined) {
    const recreated = llamaCreatedBefore;
    llamaCreatedBefore = true;
    const promise = (async () => {
      const { getLlama, LlamaLogLevel } = await loadNodeLlamaCpp();
      const llama = await getLlama({
        gpu: false, // CPU only: never probe or load CUDA / Vulkan
        build: "never", // use the bundled prebuilt binaries; never compile
        skipDownload: true, // never fetch llama.cpp sources
        usePrebuiltBinaries: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.warn,
        logger: logToConsole,
        maxThreads: 0, // no instance-wide cap: each context uses exactly the threads it asks for
      });
      // node-llama-cpp 3.21.1: a second Llama in one process loses its JS logger (the native logger flag is cleared
      // when the previous logger is released), so llama.cpp prints straight to stderr; keep that to errors only.
      if (recreated) llama.logLevel = LlamaLogLevel.error;
      return llama;
    })();
    llamaPromise = promise;
    promise.catch(() => {
      if (llamaPromise === promise) llamaPromise = undefined;
    });
  }
  return llamaPromise;
}

/** The model at `modelPath`, loaded once per process (all layers on the CPU). */
async function getModel(modelPath: string, quiet = false): Promise<LlamaModel> {
  const key = resolve(modelPath);
  let promise = modelPromises.get(key);
  if (promise === undefined) {
    const loading = (async () => {
      if (!existsSync(key)) throw new Error(`model file not found: ${key}`);
      const llama = await getLlamaInstance();
      return withLoadLogs(quiet, () => llama.loadModel({ modelPath: key, gpuLayers: 0 }));
    })();
    promise = loading;
    modelPromises.set(key, loading);
    loading.catch(() => {
      if (modelPromises.get(key) === loading) modelPromises.delete(key);
    });
  }
  return promise;
}

/** Number of tokens in the model's vocabulary (from the GGUF metadata), or `Infinity` if the file does not say. */
function vocabularySize(model: LlamaModel): number {
  return model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? Number.POSITIVE_INFINITY;
}

function assertTokenIds(tokens: readonly number[], vocabSize: number, what: string): void {
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      throw new RangeError(`${what}: token id ${t} is not in [0, ${vocabSize})`);
    }
  }
}

/**
 * Greedy generation with llama.cpp as the reference trace.
 *
 * Evaluates `promptTokens` exactly as given (include BOS yourself if wanted), then generates `steps` tokens greedily,
 * recording for each step the chosen token, the top-K natural-log probabilities of the full softmax of the logits at
 * temperature 1 (no top-k/top-p/min-p/repeat-penalty filters: the sampler chain is llama.cpp's greedy sampler only) and
 * the gap between the two best log-probabilities. Never stops at EOS/EOG: exactly `steps` steps are recorded (an
 * end-of-generation token is fed back like any other).
 *
 * Uses node-llama-cpp's CPU defaults otherwise: flash attention "auto", F16 KV cache, batch size 512 (or the context
 * size if smaller), one sequence. A fresh context is created per call and disposed afterwards; the model is cached.
 *
 * @param modelPath - path of a GGUF file.
 * @param promptTokens - token ids of the prompt (at least one).
 * @param steps - number of tokens to generate (≥ 0).
 * @param options - see {@link LlamaCppGreedyOptions}.
 */
export async function llamaCppGreedy(
  modelPath: string,
  promptTokens: number[],
  steps: number,
  options: LlamaCppGreedyOptions = {},
): Promise<LlamaCppTrace> {
  const topK = options.topK ?? DEFAULT_TOP_K;
  const threads = options.threads ?? DEFAULT_THREADS;
  if (!Number.isInteger(steps) || steps < 0)
    throw new RangeError(`steps must be an integer ≥ 0, got ${steps}`);
  if (!Number.isInteger(topK) || topK < 1) throw new RangeError(`topK must be an integer ≥ 1, got ${topK}`);
  if (!Number.isInteger(threads) || threads < 1)
    throw new RangeError(`threads must be an integer ≥ 1, got ${threads}`);
  if (promptTokens.length === 0) throw new RangeError("promptTokens must not be empty");
  const trace: LlamaCppTrace = { steps: [] };
  if (steps === 0) return trace;

  const needed = promptTokens.length + steps;
  const contextSize = options.contextSize ?? Math.max(512, Math.ceil(needed / 256) * 256);
  if (!Number.isInteger(contextSize) || contextSize < needed) {
    throw new RangeError(
      `contextSize ${contextSize} cannot hold ${promptTokens.length} prompt + ${steps} steps`,
    );
  }

  const model = await getModel(modelPath);
  const vocabSize = vocabularySize(model);
  assertTokenIds(promptTokens, vocabSize, "llamaCppGreedy");

  const context = await model.createContext({
    contextSize,
    batchSize: Math.min(DEFAULT_BATCH_SIZE, contextSize),
    threads,
    sequences: 1,
    ...(options.lora ? { lora: options.lora } : {}),
  });
  try {
    const sequence = context.getSequence();
    const generator = sequence.evaluateWithMetadata(
      promptTokens.slice() as Token[],
      { probabilities: true },
      { temperature: 0, yieldEogToken: true },
    );
    try {
      for await (const output of generator) {
        const top: Array<{ token: number; logprob: number }> = [];
        let first = Number.NaN;
        let second = Number.NaN;
        let rank = 0;
        // The map is sorted by probability, highest first (documented by node-llama-cpp).
        for (const [token, probability] of output.probabilities) {
          const logprob = Math.log(probability);
          if (rank === 0) first = logprob;
          else if (rank === 1) second = logprob;
          if (rank < topK) top.push({ token, logprob });
          rank++;
          if (rank >= topK && rank >= 2) break;
        }
        const top2Gap = rank >= 2 ? first - second : Number.POSITIVE_INFINITY;
        trace.steps.push({ token: output.token, top, top2Gap });
        if (trace.steps.length >= steps) break;
      }
    } finally {
      await generator.return(undefined);
    }
    if (trace.steps.length !== steps) {
      throw new Error(`llamaCppGreedy: llama.cpp stopped after ${trace.steps.length} of ${steps} steps`);
    }
    return trace;
  } finally {
    await context.dispose();
  }
}

/**
 * Tokenizes `text` with the model's own (llama.cpp) tokenizer.
 *
 * @param modelPath - path of a GGUF file.
 * @param text - the text to tokenize.
 * @param options - see {@link LlamaCppTokenizeOptions}.
 */
export async function llamaCppTokenize(
  modelPath: string,
  text: string,
  options: LlamaCppTokenizeOptions = {},
): Promise<number[]> {
  const model = await getModel(modelPath);
  const tokens: number[] = model.tokenize(text, options.special ?? false).slice();
  if (options.addBos) {
    const bos = model.tokens.bos;
    if (bos == null) throw new Error(`llamaCppTokenize: model ${modelPath} has no BOS token`);
    tokens.unshift(bos);
  }
  return tokens;
}

/**
 * Turns token ids back into text with the model's own (llama.cpp) detokenizer.
 *
 * Note: with a SentencePiece vocabulary the first word keeps its leading space (`▁Once` → `" Once"`) unless
 * `lastTokens` is given.
 *
 * @param modelPath - path of a GGUF file.
 * @param tokens - the token ids.
 * @param options - see {@link LlamaCppDetokenizeOptions}.
 */
export async function llamaCppDetokenize(
  modelPath: string,
  tokens: number[],
  options: LlamaCppDetokenizeOptions = {},
): Promise<string> {
  const model = await getModel(modelPath);
  return model.detokenize(
    tokens as Token[],
    options.special ?? false,
    options.lastTokens as Token[] | undefined,
  );
}

/**
 * Whether llama.cpp can load the file at all (metadata and tensors). A loaded model stays cached for later calls.
 * llama.cpp's warnings and errors during the attempt are not printed but appended to `error`.
 *
 * @param modelPath - path of a GGUF file.
 * @returns `{ ok: true }`, or `{ ok: false, error }` with llama.cpp's (or node-llama-cpp's) message.
 */
export async function llamaCppLoadCheck(modelPath: string): Promise<LlamaCppLoadResult> {
  try {
    await getModel(modelPath, true);
    return { ok: true };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Frees every cached model and the Llama instance (call it in `afterAll`).
 *
 * Later calls load them again and give the same results, but node-llama-cpp 3.21.1 cannot route the logs of a second
 * Llama instance in one process through our logger, so after a dispose only llama.cpp errors are printed (raw).
 */
export async function disposeLlamaCpp(): Promise<void> {
  const models = [...modelPromises.values()];
  modelPromises.clear();
  const llama = llamaPromise;
  llamaPromise = undefined;
  for (const promise of models) {
    try {
      await bounded((await promise).dispose(), "a llama.cpp model");
    } catch {
      // a model that failed to load has nothing to free
    }
  }
  if (llama !== undefined) {
    try {
      await bounded((await llama).dispose(), "the llama.cpp instance");
    } catch {
      // a Llama that failed to initialise has nothing to free
    }
  }
}

/** How long a teardown dispose may take before it is abandoned. */
const DISPOSE_TIMEOUT_MS = 20_000;

/**
 * Waits for a node-llama-cpp dispose, at most DISPOSE_TIMEOUT_MS: once, on a loaded CI machine, a
 * dispose never settled and the suite's `afterAll` timed out after every test had passed. The
 * memory goes with the test process anyway, so a hung teardown is reported, not waited for.
 */
async function bounded(dispose: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), DISPOSE_TIMEOUT_MS);
    timer.unref();
  });
  try {
    if ((await Promise.race([dispose, timeout])) === "timeout")
      process.stderr.write(`disposeLlamaCpp: ${what} did not finish disposing in ${DISPOSE_TIMEOUT_MS} ms\n`);
  } finally {
    clearTimeout(timer);
  }
}
