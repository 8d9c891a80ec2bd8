import { RyzansteinError } from "@ryzanstein/core-tensor";
import { type BlockCopy, KvBlockPool } from "./block-pool.js";

/** Settings of a {@link Scheduler}. */
export interface SchedulerOptions {
  /** Blocks in the KV pool. */
  numBlocks: number;
  /** Positions per KV block. Default 16. */
  blockSize?: number;
  /** Tokens one step may process in total (decode tokens plus prompt chunks). Default 512. */
  maxBatchTokens?: number;
  /** Sequences running at once. Default 16. */
  maxSeqs?: number;
  /** Positions one sequence may reach (the context size). */
  maxContext: number;
  /**
   * Waiting requests accepted beyond the free sequence slots before {@link Scheduler.add} refuses
   * (the server answers 503). Default 256.
   */
  maxQueue?: number;
  /** Reuse cached prefix blocks. Default true. */
  prefixCaching?: boolean;
}

/** What a request asks of the scheduler. */
export interface ScheduledRequest {
  /** Unique id. */
  id: string;
  /** Prompt token ids (at least one). */
  prompt: readonly number[];
  /** Tokens to generate at most (0: only compute the prompt, e.g. for embeddings). */
  maxTokens: number;
  /**
   * Parallel sampling: the id of a request with the same prompt, added earlier. This request
   * then shares that request's prompt blocks (a fork, copy-on-write) once its prompt is computed,
   * instead of computing the prompt again.
   */
  forkOf?: string;
}

/** One sequence's part of a step. */
export interface PlannedSequence {
  /** Request id. */
  id: string;
  /** Token ids to run through the model. */
  tokens: number[];
  /** Position of the first of them. */
  start: number;
  /** The sequence's block table (covers `start + tokens.length` positions). */
  blockTable: number[];
  /** True when this step completes the sequence's known tokens, so its last row's logits are sampled. */
  sample: boolean;
}

/** What the engine runs in one step: plain data. */
export interface StepPlan {
  /** Step counter. */
  step: number;
  /** Block copies (copy-on-write) to perform before the forward pass. */
  copies: BlockCopy[];
  /** Sequences in this step, decode first. */
  seqs: PlannedSequence[];
  /** Requests preempted in this step (their K/V is dropped; they will be recomputed). */
  preempted: string[];
  /** Total tokens in the step. */
  numTokens: number;
}

/** What the engine reports after a step: the token sampled for each sequence whose `sample` was set. */
export interface StepResult {
  /** Sampled token per request id. */
  sampled: { id: string; token: number }[];
}

/** A request that ended inside the scheduler. */
export interface FinishedRequest {
  /** Request id. */
  id: string;
  /** `length`: reached `maxTokens` or the context; `prompt`: a `maxTokens: 0` request finished its prompt. */
  reason: "length" | "prompt";
}

interface RequestState {
  id: string;
  tokens: number[];
  promptLength: number;
  maxTokens: number;
  computed: number;
  arrival: number;
  /** Requests waiting to fork from this one when its prompt is computed. */
  forks: RequestState[];
  /** The request this one waits to fork from. */
  parent?: RequestState;
}

/**
 * Continuous batching in the style of vLLM v1. Each request has a count of computed tokens (K/V
 * in the cache) and of known tokens (prompt plus generated); every step fills a token budget with
 * the running requests' wanted tokens first (one per decoding request, a chunk for a request still
 * in its prompt) and then admits waiting requests first come, first served, each as a prompt chunk
 * that fits the budget (chunked prefill). Admission needs free KV blocks; when a running request
 * cannot grow, the most recently admitted one is preempted (blocks freed, recomputed later).
 * The scheduler only decides; the engine executes {@link StepPlan}s and reports {@link StepResult}s.
 */
export class Scheduler {
  /** The KV block bookkeeping. */
  readonly pool: KvBlockPool;
  /** Settings, defaults filled in. */
  readonly options: Required<SchedulerOptions>;
  private readonly waiting: RequestState[] = [];
  private readonly running: RequestState[] = [];
  private readonly byId = new Map<string, RequestState>();
  private planned: StepPlan | undefined;
  private steps = 0;
  private arrivals = 0;
  private preemptions = 0;

  constructor(options: SchedulerOptions) {
    const o: Required<SchedulerOptions> = {
      blockSize: 16,
      maxBatchTokens: 512,
      maxSeqs: 16,
      maxQueue: 256,
      prefixCaching: true,
      ...options,
    };
    for (const k of ["numBlocks", "blockSize", "maxBatchTokens", "maxSeqs", "maxContext"] as const) {
      if (!Number.isInteger(o[k]) || o[k] < 1)
        throw new RyzansteinError("INVALID_ARGUMENT", `${k} must be a positive integer, got ${o[k]}`);
    }
    if (!Number.isInteger(o.maxQueue) || o.maxQueue < 0)
      throw new RyzansteinError("INVALID_ARGUMENT", `maxQueue must be a non-negative integer`);
    this.options = o;
    this.pool = new KvBlockPool(o.numBlocks, o.blockSize);
  }

  /** Requests waiting for admission. */
  get queueDepth(): number {
    return this.waiting.length;
  }

  /** Requests admitted and not finished. */
  get runningCount(): number {
    return this.running.length;
  }

  /** Requests preempted since the start. */
  get preemptionCount(): number {
    return this.preemptions;
  }

  /** True while any request is waiting or running. */
  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Largest prompt + generation a request may have: the context, and what the whole pool holds. */
  get maxSequenceTokens(): number {
    return Math.min(this.options.maxContext, this.options.numBlocks * this.options.blockSize);
  }

  /**
   * Queues a request. Throws `INVALID_ARGUMENT` for an empty prompt, a duplicate id or a prompt
   * that cannot fit; returns false when the queue is full (the caller should answer 503).
   */
  add(req: ScheduledRequest): boolean {
    if (this.byId.has(req.id))
      throw new RyzansteinError("INVALID_ARGUMENT", `duplicate request id ${req.id}`);
    if (req.prompt.length === 0) throw new RyzansteinError("INVALID_ARGUMENT", "the prompt has no tokens");
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 0)
      throw new RyzansteinError("INVALID_ARGUMENT", "maxTokens must be a non-negative integer");
    const limit = this.maxSequenceTokens;
    if (req.prompt.length + (req.maxTokens > 0 ? 1 : 0) > limit) {
      throw new RyzansteinError(
        "CONTEXT_OVERFLOW",
        `the prompt has ${req.prompt.length} tokens; at most ${limit - 1} fit the context`,
      );
    }
    const parent = req.forkOf === undefined ? undefined : this.byId.get(req.forkOf);
    const canFork =
      parent !== undefined &&
      parent.parent === undefined &&
      parent.computed < parent.promptLength &&
      parent.tokens.length === req.prompt.length &&
      parent.tokens.every((t, i) => t === req.prompt[i]);
    // Requests that the next step admits to a free slot do not count against the queue: whether a
    // step ran between two arrivals must not decide which of them is refused.
    const freeSlots = Math.max(0, this.options.maxSeqs - this.running.length);
    if (!canFork && this.waiting.length >= this.options.maxQueue + freeSlots) return false;
    const s: RequestState = {
      id: req.id,
      tokens: [...req.prompt],
      promptLength: req.prompt.length,
      maxTokens: req.maxTokens,
      computed: 0,
      arrival: this.arrivals++,
      forks: [],
    };
    this.byId.set(s.id, s);
    if (canFork && parent) {
      s.parent = parent;
      parent.forks.push(s);
    } else {
      this.waiting.push(s);
    }
    return true;
  }

  /** Removes a request wherever it is and frees its blocks at once. Unknown ids are ignored. */
  cancel(id: string): void {
    const s = this.byId.get(id);
    if (!s) return;
    this.byId.delete(id);
    const w = this.waiting.indexOf(s);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(s);
    if (r >= 0) this.running.splice(r, 1);
    this.pool.free(id);
    if (s.parent) s.parent.forks.splice(s.parent.forks.indexOf(s), 1);
    // Requests waiting to fork from this one compute their prompt themselves instead.
    for (const f of s.forks) {
      f.parent = undefined;
      this.waiting.push(f);
    }
    s.forks = [];
  }

  /** Ends a request (a stop condition the engine detected); same as {@link cancel}. */
  finish(id: string): void {
    this.cancel(id);
  }

  /** Tokens (prompt and generated) of a request. */
  tokensOf(id: string): readonly number[] | undefined {
    return this.byId.get(id)?.tokens;
  }

  /** Plans the next step. Call {@link update} with its result before planning again. */
  schedule(): StepPlan {
    if (this.planned)
      throw new RyzansteinError("INVALID_ARGUMENT", "schedule() called twice without update()");
    const o = this.options;
    let budget = o.maxBatchTokens;
    const seqs: PlannedSequence[] = [];
    const copies: StepPlan["copies"] = [];
    const preempted: string[] = [];

    // 1. Running requests, oldest first: decode tokens (and continuing prompt chunks).
    for (let i = 0; i < this.running.length && budget > 0 && seqs.length < o.maxSeqs; i++) {
      const s = this.running[i];
      const take = Math.min(s.tokens.length - s.computed, budget);
      if (take <= 0) continue;
      // Grow the block table; preempt the newest running requests until it fits.
      let ok = false;
      for (;;) {
        const grown = this.pool.ensure(s.id, s.computed + take);
        const cow = grown ? this.pool.prepareWrite(s.id, s.computed, s.computed + take) : undefined;
        if (cow) {
          copies.push(...cow);
          ok = true;
          break;
        }
        const victim = this.running[this.running.length - 1];
        this.preempt(victim);
        preempted.push(victim.id);
        if (victim === s) break;
      }
      if (!ok) break;
      seqs.push(this.plan(s, take));
      budget -= take;
    }

    // 2. Waiting requests, first come first served, unless this step had to preempt.
    while (
      preempted.length === 0 &&
      budget > 0 &&
      this.waiting.length > 0 &&
      this.running.length < o.maxSeqs
    ) {
      const s = this.waiting[0];
      const cached = o.prefixCaching ? this.pool.cachedPrefix(s.tokens) : 0;
      // Always compute at least the last known token (its logits are needed).
      const reuse = Math.min(cached, Math.floor((s.tokens.length - 1) / o.blockSize) * o.blockSize);
      const take = Math.min(s.tokens.length - reuse, budget);
      const needBlocks = this.pool.blocksFor(reuse + take) - reuse / o.blockSize;
      if (needBlocks > this.pool.freeBlocks - this.reusedFree(s.tokens, reuse)) break;
      this.waiting.shift();
      s.computed = o.prefixCaching
        ? this.pool.open(s.id, s.tokens, reuse)
        : this.pool.open(s.id, s.tokens, 0);
      if (!this.pool.ensure(s.id, s.computed + take)) {
        // Cannot happen after the check above; undo to keep the pool consistent.
        this.pool.free(s.id);
        s.computed = 0;
        this.waiting.unshift(s);
        break;
      }
      this.running.push(s);
      seqs.push(this.plan(s, Math.min(take, s.tokens.length - s.computed)));
      budget -= seqs[seqs.length - 1].tokens.length;
    }

    const plan: StepPlan = {
      step: this.steps++,
      copies,
      seqs,
      preempted,
      numTokens: o.maxBatchTokens - budget,
    };
    this.planned = plan;
    return plan;
  }

  /**
   * Applies a step's result: advances computed counts, registers full blocks in the prefix cache,
   * appends sampled tokens, and ends requests that reached their length. Returns those.
   */
  update(result: StepResult): FinishedRequest[] {
    const plan = this.planned;
    if (!plan) throw new RyzansteinError("INVALID_ARGUMENT", "update() without a planned step");
    this.planned = undefined;
    const sampled = new Map(result.sampled.map((x) => [x.id, x.token]));
    const finished: FinishedRequest[] = [];
    for (const p of plan.seqs) {
      const s = this.byId.get(p.id);
      if (!s) continue; // cancelled while the step ran
      s.computed = p.start + p.tokens.length;
      if (this.options.prefixCaching) this.pool.commit(s.id, s.tokens, s.computed);
      if (!p.sample) continue;
      if (s.forks.length > 0 && s.computed === s.promptLength) this.startForks(s);
      if (s.maxTokens === 0) {
        finished.push({ id: s.id, reason: "prompt" });
        this.cancel(s.id);
        continue;
      }
      const token = sampled.get(p.id);
      if (token === undefined) throw new RyzansteinError("INVALID_ARGUMENT", `no sampled token for ${p.id}`);
      s.tokens.push(token);
      const generated = s.tokens.length - s.promptLength;
      if (generated >= s.maxTokens || s.tokens.length >= this.maxSequenceTokens) {
        finished.push({ id: s.id, reason: "length" });
        this.cancel(s.id);
      }
    }
    return finished;
  }

  /**
   * The prompt of `s` is computed: its waiting forks share its blocks. Each recomputes only the
   * last prompt token (to get its own logits), which copies the last block on write.
   */
  private startForks(s: RequestState): void {
    for (const f of s.forks) {
      f.parent = undefined;
      this.pool.fork(s.id, f.id);
      f.computed = f.promptLength - 1;
      this.running.push(f);
    }
    s.forks = [];
  }

  private plan(s: RequestState, take: number): PlannedSequence {
    return {
      id: s.id,
      tokens: s.tokens.slice(s.computed, s.computed + take),
      start: s.computed,
      blockTable: [...this.pool.table(s.id)],
      sample: s.computed + take === s.tokens.length,
    };
  }

  /** Cached blocks a new sequence would reference that are currently free (they stop counting as free). */
  private reusedFree(tokens: readonly number[], reuse: number): number {
    return reuse > 0 ? this.pool.freeCachedAmong(tokens, reuse) : 0;
  }

  private preempt(s: RequestState): void {
    const r = this.running.indexOf(s);
    if (r >= 0) this.running.splice(r, 1);
    this.pool.free(s.id);
    s.computed = 0;
    this.preemptions++;
    // Back to the front of the queue, in arrival order among preempted requests.
    let at = 0;
    while (at < this.waiting.length && this.waiting[at].arrival < s.arrival) at++;
    this.waiting.splice(at, 0, s);
  }
}
