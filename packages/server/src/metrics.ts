import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineStats } from "./protocol.js";

/** The server's Prometheus metrics, in a registry of their own. */
export class ServerMetrics {
  /** The registry `/metrics` renders. */
  readonly registry = new Registry();
  /** Requests by endpoint and status. */
  readonly requests: Counter<"endpoint" | "status">;
  /** Prompt tokens processed. */
  readonly promptTokens: Counter;
  /** Tokens generated. */
  readonly generatedTokens: Counter;
  /** Time to first token. */
  readonly ttft: Histogram;
  /** Time between tokens of one stream. */
  readonly itl: Histogram;

  constructor(stats: () => EngineStats) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "ryzanstein_requests_total",
      help: "HTTP requests by endpoint and status code",
      labelNames: ["endpoint", "status"],
      registers,
    });
    this.promptTokens = new Counter({
      name: "ryzanstein_prompt_tokens_total",
      help: "Prompt tokens",
      registers,
    });
    this.generatedTokens = new Counter({
      name: "ryzanstein_generation_tokens_total",
      help: "Generated tokens",
      registers,
    });
    this.ttft = new Histogram({
      name: "ryzanstein_time_to_first_token_seconds",
      help: "Time from request to first token",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.itl = new Histogram({
      name: "ryzanstein_inter_token_latency_seconds",
      help: "Time between consecutive tokens of one request",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    const gauge = (name: string, help: string, value: (s: EngineStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value(stats()));
        },
      });
    gauge("ryzanstein_queue_depth", "Requests waiting for admission", (s) => s.waiting);
    gauge("ryzanstein_running_requests", "Requests in the running batch", (s) => s.running);
    gauge("ryzanstein_kv_blocks_used", "KV cache blocks referenced by requests", (s) => s.usedBlocks);
    gauge("ryzanstein_kv_blocks_total", "KV cache blocks in the pool", (s) => s.totalBlocks);
    gauge("ryzanstein_kv_cache_usage_ratio", "Fraction of KV blocks in use", (s) =>
      s.totalBlocks ? s.usedBlocks / s.totalBlocks : 0,
    );
    gauge("ryzanstein_prefix_cache_hit_ratio", "Prompt tokens found in the prefix cache / looked up", (s) =>
      s.queriedTokens ? s.hitTokens / s.queriedTokens : 0,
    );
    gauge(
      "ryzanstein_prefix_cache_hit_tokens",
      "Prompt tokens found in the prefix cache",
      (s) => s.hitTokens,
    );
    gauge("ryzanstein_preemptions", "Requests preempted (recomputed)", (s) => s.preemptions);
  }
}
