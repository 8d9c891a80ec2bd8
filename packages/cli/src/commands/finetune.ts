import { existsSync, readFileSync, statSync } from "node:fs";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { Isa } from "@ryzanstein/kernels-native";
import {
  adapterWeights,
  finetune,
  type LoraWeights,
  loadBase,
  loadGGUFAdapter,
  loadPeft,
  saveGGUFAdapter,
  savePeft,
} from "@ryzanstein/lora";
import { createTokenizerFromGGUF, type Tokenizer } from "@ryzanstein/tokenizers";
import { chatExamples, parseChatJsonl } from "@ryzanstein/training";
import { resolveModelPath } from "../resolve-model.js";
import { reporter } from "./train.js";

/** Options of `ryzanstein finetune`. */
export interface FinetuneCommandOptions {
  /** Base GGUF (default: as `run` resolves it). */
  model?: string;
  /**
   * Plain text, or JSONL with one `{"text": ...}` record per line, or JSONL chat records
   * `{"messages": [...]}` (chat template applied, loss on assistant turns only).
   */
  data: string;
  /** Activation checkpointing: `auto` (on for large models), `on`, `off`. */
  checkpoint?: "auto" | "on" | "off";
  /** Output GGUF LoRA adapter. */
  out: string;
  /** Also write a PEFT directory here. */
  peft?: string;
  /** Rank. */
  loraR: number;
  /** Alpha. */
  loraAlpha: number;
  /** Dropout. */
  loraDropout: number;
  /** Target modules (names or patterns). */
  targets: string[];
  /** Optimizer steps. */
  steps: number;
  /** Peak learning rate. */
  lr: number;
  /** Tokens per window. */
  seqLen: number;
  /** Windows per step. */
  batchSize: number;
  /** Seed. */
  seed: number;
  /** Threads. */
  threads?: number;
  /** Kernel variant. */
  isa?: Isa;
}

/** True when `path` is JSONL whose first record is a chat record (`{"messages": [...]}`). */
export function isChatJsonl(path: string): boolean {
  if (!/\.jsonl$/i.test(path) || !existsSync(path)) return false;
  const first = readFileSync(path, "utf8")
    .split("\n")
    .find((l) => l.trim() !== "");
  if (first === undefined) return false;
  try {
    return Array.isArray((JSON.parse(first) as { messages?: unknown } | null)?.messages);
  } catch {
    return false;
  }
}

/**
 * Tokens to fine-tune on: chat JSONL records rendered with the model's chat template, with a loss
 * mask over the assistant turns; otherwise the text of {@link readTrainingText}, every token a target.
 */
export function readTrainingData(
  path: string,
  tok: Tokenizer,
  chatTemplate: string | undefined,
): { tokens: Int32Array; lossMask?: Uint8Array } {
  if (isChatJsonl(path)) {
    const ex = chatExamples(parseChatJsonl(readFileSync(path, "utf8"), path), tok, chatTemplate);
    return { tokens: ex.tokens, lossMask: ex.mask };
  }
  return { tokens: Int32Array.from(tok.encode(readTrainingText(path))) };
}

/** Reads training text: plain text, or `{"text": ...}` JSONL records joined by newlines. */
export function readTrainingText(path: string): string {
  if (!existsSync(path))
    throw new RyzansteinError("IO_ERROR", `data file not found: ${path}`, { file: path });
  const raw = readFileSync(path, "utf8");
  let text = raw;
  if (/\.jsonl$/i.test(path)) {
    const parts: string[] = [];
    raw.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        throw new RyzansteinError(
          "INVALID_ARGUMENT",
          `${path}:${i + 1}: malformed JSON (${(e as Error).message})`,
        );
      }
      const t = (rec as { text?: unknown } | null)?.text;
      if (typeof t !== "string")
        throw new RyzansteinError(
          "INVALID_ARGUMENT",
          `${path}:${i + 1}: expected an object with a "text" string`,
        );
      parts.push(t);
    });
    text = parts.join("\n");
  }
  if (text.trim() === "") throw new RyzansteinError("INVALID_ARGUMENT", `data file ${path} is empty`);
  return text;
}

/** `ryzanstein finetune`: trains a LoRA adapter on a frozen base and writes it as GGUF (and PEFT). */
export function finetuneCommand(
  o: FinetuneCommandOptions,
  out: NodeJS.WritableStream = process.stdout,
): void {
  const basePath = resolveModelPath(o.model);
  if (!existsSync(o.data))
    throw new RyzansteinError("IO_ERROR", `data file not found: ${o.data}`, { file: o.data });
  const base = loadBase(basePath);
  const tok = createTokenizerFromGGUF(base.tokenizer);
  const template = base.tokenizer["tokenizer.chat_template"];
  const { tokens, lossMask } = readTrainingData(
    o.data,
    tok,
    typeof template === "string" ? template : undefined,
  );
  const progress = reporter(o.steps, "finetune");
  let r: ReturnType<typeof finetune>;
  try {
    r = finetune({
      base,
      tokens,
      lossMask,
      checkpointLayers: o.checkpoint === "on" ? true : o.checkpoint === "off" ? false : undefined,
      lora: { rank: o.loraR, alpha: o.loraAlpha, dropout: o.loraDropout, targetModules: o.targets },
      training: {
        seqLen: o.seqLen,
        batchSize: o.batchSize,
        steps: o.steps,
        lr: o.lr,
        seed: o.seed,
        evalFraction: 0.1,
      },
      threads: o.threads,
      isa: o.isa,
      onProgress: (p) => progress.update(p),
    });
  } finally {
    progress.stop();
  }
  const w = adapterWeights(r.adapters);
  saveGGUFAdapter(o.out, w);
  if (o.peft) savePeft(o.peft, w, base.shape, o.loraDropout);
  out.write(
    `wrote ${o.out}${o.peft ? ` and ${o.peft}/` : ""}: ${w.tensors.size} adapters, rank ${w.rank}; held-out loss ${r.evalBefore.toFixed(4)} -> ${r.evalAfter.toFixed(4)} nats/token in ${Math.round(r.seconds)} s\n`,
  );
}

/** Reads an adapter (GGUF file or PEFT directory) for the model at `basePath`. */
export function readAdapter(basePath: string, adapter: string): LoraWeights {
  if (!existsSync(adapter))
    throw new RyzansteinError("IO_ERROR", `adapter not found: ${adapter}`, { file: adapter });
  return statSync(adapter).isDirectory()
    ? loadPeft(adapter, loadBase(basePath, { repack: false }).shape)
    : loadGGUFAdapter(adapter);
}
