/**
 * `@ryzanstein/batching`: continuous batching as plain data. A {@link Scheduler} decides which
 * tokens of which requests run in each step (decode first, then prompt chunks, within a token
 * budget and the free KV blocks); a {@link KvBlockPool} keeps the paged KV cache's block tables,
 * reference counts and the hash-chained prefix cache. No engine import: the engine executes
 * {@link StepPlan}s and reports {@link StepResult}s.
 *
 * @packageDocumentation
 */
export type { BlockCopy, BlockPoolStats } from "./block-pool.js";
export { KvBlockPool } from "./block-pool.js";
export { chainHash } from "./hash.js";
export type {
  FinishedRequest,
  PlannedSequence,
  ScheduledRequest,
  SchedulerOptions,
  StepPlan,
  StepResult,
} from "./scheduler.js";
export { Scheduler } from "./scheduler.js";
