// The llama.cpp side: node-llama-cpp 3.21.1, prebuilt CPU binaries, its CPU defaults (flash
// attention auto, F16 KV cache, batch 512), the same thread count as ours.
import type { Llama, LlamaContext, LlamaModel, Token } from "node-llama-cpp";

let llamaPromise: Promise<Llama> | undefined;

/** The process-wide Llama: CPU only, never builds or downloads, errors-only logging. */
export async function getPeer(): Promise<Llama> {
  if (!llamaPromise) {
    llamaPromise = (async () => {
      const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
      return getLlama({
        gpu: false,
        build: "never",
        skipDownload: true,
        usePrebuiltBinaries: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.error,
        maxThreads: 0,
      });
    })();
  }
  return llamaPromise;
}

/** One model loaded in llama.cpp with one context of `contextSize` at `threads`. */
export interface PeerSession {
  model: LlamaModel;
  context: LlamaContext;
  dispose(): Promise<void>;
}

/** Loads `path` (all layers on the CPU) and makes a one-sequence context. */
export async function openPeer(path: string, threads: number, contextSize: number): Promise<PeerSession> {
  const llama = await getPeer();
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const context = await model.createContext({
    contextSize,
    batchSize: Math.min(512, contextSize),
    threads,
    sequences: 1,
  });
  return {
    model,
    context,
    async dispose() {
      await context.dispose();
      await model.dispose();
    },
  };
}

/** Seconds to evaluate `tokens` into an empty sequence (pp). */
export async function peerPrompt(s: PeerSession, tokens: number[]): Promise<number> {
  const seq = s.context.getSequence();
  await seq.clearHistory();
  const t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(tokens as Token[]);
  const seconds = (performance.now() - t0) / 1000;
  seq.dispose();
  return seconds;
}

/** Seconds to generate `n` tokens greedily one at a time from one start token (tg). */
export async function peerGenerate(s: PeerSession, start: number, n: number): Promise<number> {
  const seq = s.context.getSequence();
  await seq.clearHistory();
  let count = 0;
  const t0 = performance.now();
  for await (const _ of seq.evaluate([start as Token], { temperature: 0, yieldEogToken: true })) {
    if (++count >= n) break;
  }
  const seconds = (performance.now() - t0) / 1000;
  seq.dispose();
  return seconds;
}

/** One greedy step of llama.cpp: the chosen token, top-k log-probabilities and the top-2 gap. */
export interface PeerStep {
  token: number;
  top: { token: number; logprob: number }[];
  top2Gap: number;
}

/** Greedy trace of `steps` tokens after `prompt`, with top-`k` log-probabilities per step. */
export async function peerGreedy(
  s: PeerSession,
  prompt: number[],
  steps: number,
  k: number,
): Promise<PeerStep[]> {
  const seq = s.context.getSequence();
  await seq.clearHistory();
  const out: PeerStep[] = [];
  const gen = seq.evaluateWithMetadata(
    prompt as Token[],
    { probabilities: true },
    { temperature: 0, yieldEogToken: true },
  );
  try {
    for await (const o of gen) {
      const top: { token: number; logprob: number }[] = [];
      for (const [token, p] of o.probabilities) {
        top.push({ token, logprob: Math.log(p) });
        if (top.length >= Math.max(k, 2)) break;
      }
      out.push({ token: o.token, top: top.slice(0, k), top2Gap: top[0].logprob - top[1].logprob });
      if (out.length >= steps) break;
    }
  } finally {
    await gen.return(undefined);
    seq.dispose();
  }
  return out;
}
