import { RyzansteinError, type RyzansteinErrorCode } from "@ryzanstein/core-tensor";
import type { ModelConfig } from "./config.js";
import type { GeneratedToken, GenerateOptions, GenerationResult } from "./generate.js";
import type { SessionOptions } from "./session.js";

/** Messages from the main thread to the engine worker. Plain data only. */
export type WorkerRequest =
  | { type: "init"; path: string; options: SessionOptions }
  | { type: "generate"; id: number; prompt: number[]; options: GenerateOptions; abort: SharedArrayBuffer }
  | { type: "logits"; id: number; tokens: number[] }
  | { type: "dispose" };

/** Serialized error. */
export interface WireError {
  code: RyzansteinErrorCode | "INTERNAL";
  message: string;
}

/** Messages from the engine worker to the main thread. */
export type WorkerReply =
  | { type: "progress"; phase: string; fraction: number }
  | { type: "ready"; config: ModelConfig; contextSize: number; backend: string }
  | { type: "token"; id: number; token: GeneratedToken }
  | { type: "done"; id: number; result: GenerationResult }
  | { type: "logits"; id: number; data: Float32Array }
  | { type: "error"; id?: number; error: WireError };

/** Turns any thrown value into a {@link WireError}. */
export function toWireError(e: unknown): WireError {
  if (e instanceof RyzansteinError) return { code: e.code, message: e.message };
  return { code: "INTERNAL", message: e instanceof Error ? e.message : String(e) };
}

/** Rebuilds an error thrown in the worker. */
export function fromWireError(e: WireError): Error {
  if (e.code === "INTERNAL") return new Error(e.message);
  return new RyzansteinError(e.code, e.message);
}
