/**
 * `@ryzanstein/server`: an OpenAI-compatible HTTP server (fastify) over continuous batching.
 * `POST /v1/chat/completions`, `/v1/completions` (SSE streaming or not), `/v1/embeddings`,
 * `GET /v1/models`, `/health` and `/metrics` (Prometheus). The model runs in a worker thread
 * ({@link BatchEngine}): a scheduler from `@ryzanstein/batching` plans each step over a paged KV
 * cache, and the engine's batched forward pass executes it.
 *
 * @packageDocumentation
 */
export type { RequestHandle, RequestListener } from "./batch-engine.js";
export { BatchEngine } from "./batch-engine.js";
export type { ChatMessage } from "./chat.js";
export { ChatFormatter } from "./chat.js";
export type { OpenAIErrorType } from "./errors.js";
export { HttpError } from "./errors.js";
export { ServerMetrics } from "./metrics.js";
export type { BatchEngineOptions, EngineStats, RequestParams, TokenEvent } from "./protocol.js";
export { MAX_N } from "./schemas.js";
export type { RunningServer, ServerOptions } from "./server.js";
export { startServer } from "./server.js";
