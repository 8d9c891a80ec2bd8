import { describe, expect, it } from "vitest";
import { type FinishedRequest, Scheduler, type StepPlan } from "../src/index.js";

/** Runs the scheduler with a fake engine that samples token 7 + position; returns the plans. */
function drive(
  s: Scheduler,
  steps: number,
  onStep?: (p: StepPlan, f: FinishedRequest[]) => void,
): StepPlan[] {
  const plans: StepPlan[] = [];
  for (let i = 0; i < steps && s.hasWork(); i++) {
    const plan = s.schedule();
    plans.push(plan);
    const sampled = plan.seqs
      .filter((q) => q.sample)
      .map((q) => ({ id: q.id, token: 7 + q.start + q.tokens.length }));
    const finished = s.update({ sampled });
    onStep?.(plan, finished);
    s.pool.check();
  }
  return plans;
}

const prompt = (n: number, base = 1) => Array.from({ length: n }, (_, i) => base + i);

describe("Scheduler", () => {
  it("puts decode tokens first and chunks prompts into the token budget", () => {
    const s = new Scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 8, maxContext: 64 });
    s.add({ id: "a", prompt: prompt(3), maxTokens: 5 });
    s.add({ id: "b", prompt: prompt(12), maxTokens: 2 });
    const plans = drive(s, 3);
    expect(plans[0].seqs.map((q) => [q.id, q.tokens.length, q.sample])).toEqual([
      ["a", 3, true],
      ["b", 5, false],
    ]);
    expect(plans[1].seqs.map((q) => [q.id, q.tokens.length, q.start, q.sample])).toEqual([
      ["a", 1, 3, true],
      ["b", 7, 5, true],
    ]);
    expect(plans[1].seqs[0].tokens).toEqual([7 + 3]);
    for (const p of plans) expect(p.numTokens).toBeLessThanOrEqual(8);
  });

  it("finishes at maxTokens and frees every block", () => {
    const s = new Scheduler({ numBlocks: 32, blockSize: 4, maxContext: 64 });
    const finished: string[] = [];
    s.add({ id: "a", prompt: prompt(5), maxTokens: 3 });
    s.add({ id: "e", prompt: prompt(6), maxTokens: 0 });
    drive(s, 20, (_, f) => finished.push(...f.map((x) => `${x.id}:${x.reason}`)));
    expect(finished.sort()).toEqual(["a:length", "e:prompt"]);
    expect(s.hasWork()).toBe(false);
    expect(s.pool.usedBlocks).toBe(0);
  });

  it("reuses a cached prefix for a later request with the same full blocks", () => {
    const s = new Scheduler({ numBlocks: 32, blockSize: 4, maxContext: 64 });
    s.add({ id: "a", prompt: prompt(10), maxTokens: 1 });
    drive(s, 10);
    s.add({ id: "b", prompt: [...prompt(8), 50, 51], maxTokens: 1 });
    const [plan] = drive(s, 1);
    expect(plan.seqs[0].start).toBe(8);
    expect(plan.seqs[0].tokens).toEqual([50, 51]);
    drive(s, 10);
    // a prompt that is entirely cached still computes its last block
    s.add({ id: "c", prompt: prompt(8), maxTokens: 1 });
    const [plan2] = drive(s, 1);
    expect(plan2.seqs[0].start).toBe(4);
    expect(s.pool.stats().hitTokens).toBe(12);
  });

  it("preempts the newest request when blocks run out and recomputes it later", () => {
    // 6 blocks of 4 = 24 positions; two requests of 8-token prompts wanting 12 more tokens each
    const s = new Scheduler({ numBlocks: 6, blockSize: 4, maxContext: 64 });
    s.add({ id: "a", prompt: prompt(8), maxTokens: 12 });
    s.add({ id: "b", prompt: prompt(8, 100), maxTokens: 12 });
    const out: Record<string, number> = {};
    let preempted = 0;
    drive(s, 200, (p, f) => {
      preempted += p.preempted.length;
      for (const x of f) out[x.id] = s.pool.usedBlocks;
    });
    expect(preempted).toBeGreaterThan(0);
    expect(Object.keys(out).sort()).toEqual(["a", "b"]);
    expect(s.pool.usedBlocks).toBe(0);
    expect(s.hasWork()).toBe(false);
  });

  it("cancel frees everything at once, waiting or running, even mid-step", () => {
    const s = new Scheduler({ numBlocks: 16, blockSize: 4, maxContext: 64, maxBatchTokens: 4 });
    s.add({ id: "a", prompt: prompt(9), maxTokens: 10 });
    s.add({ id: "b", prompt: prompt(3), maxTokens: 10 });
    const plan = s.schedule();
    expect(plan.seqs.map((q) => q.id)).toEqual(["a"]);
    s.cancel("a");
    s.cancel("b");
    s.update({ sampled: [] });
    expect(s.pool.usedBlocks).toBe(0);
    expect(s.hasWork()).toBe(false);
    s.pool.check();
  });

  it("forks parallel samples from the parent's prompt blocks with copy-on-write", () => {
    const s = new Scheduler({ numBlocks: 32, blockSize: 4, maxContext: 64 });
    s.add({ id: "p", prompt: prompt(6), maxTokens: 3 });
    s.add({ id: "c1", prompt: prompt(6), maxTokens: 3, forkOf: "p" });
    s.add({ id: "c2", prompt: prompt(6), maxTokens: 3, forkOf: "p" });
    const plans = drive(s, 1);
    expect(plans[0].seqs.map((q) => q.id)).toEqual(["p"]); // only the parent computes the prompt
    const [second] = drive(s, 1);
    // the children recompute just the last prompt token, each in a private copy of the last block
    const kids = second.seqs.filter((q) => q.id !== "p");
    expect(kids.map((q) => [q.id, q.start, q.tokens.length])).toEqual([
      ["c1", 5, 1],
      ["c2", 5, 1],
    ]);
    expect(kids[0].blockTable[0]).toBe(plans[0].seqs[0].blockTable[0]); // first block shared
    expect(second.copies.length).toBeGreaterThanOrEqual(2);
    drive(s, 20);
    expect(s.hasWork()).toBe(false);
    expect(s.pool.usedBlocks).toBe(0);
  });

  it("forks wait for their parent and compute their own prompt if it is cancelled", () => {
    const s = new Scheduler({ numBlocks: 32, blockSize: 4, maxContext: 64, maxBatchTokens: 4 });
    s.add({ id: "p", prompt: prompt(9), maxTokens: 2 });
    s.add({ id: "c", prompt: prompt(9), maxTokens: 2, forkOf: "p" });
    drive(s, 1);
    s.cancel("p");
    const finished: string[] = [];
    drive(s, 20, (_, f) => finished.push(...f.map((x) => x.id)));
    expect(finished).toEqual(["c"]);
    expect(s.pool.usedBlocks).toBe(0);
  });

  it("bounds the queue beyond the free sequence slots and rejects prompts that cannot fit", () => {
    const s = new Scheduler({ numBlocks: 4, blockSize: 4, maxContext: 64, maxSeqs: 1, maxQueue: 1 });
    // a takes the one free slot at the next step, b waits beyond it, e would be a second in the queue
    expect(s.add({ id: "a", prompt: [1], maxTokens: 4 })).toBe(true);
    expect(s.add({ id: "b", prompt: [1], maxTokens: 4 })).toBe(true);
    expect(s.add({ id: "e", prompt: [1], maxTokens: 4 })).toBe(false);
    // the same once a runs: the queue holds b, and no slot is free
    s.update({ sampled: s.schedule().seqs.map((x) => ({ id: x.id, token: 2 })) });
    expect(s.runningCount).toBe(1);
    expect(s.add({ id: "f", prompt: [1], maxTokens: 4 })).toBe(false);
    expect(() => s.add({ id: "c", prompt: prompt(16), maxTokens: 1 })).toThrow(/fit the context/);
    expect(() => s.add({ id: "a", prompt: [1], maxTokens: 1 })).toThrow(/duplicate/);
    expect(() => s.add({ id: "d", prompt: [], maxTokens: 1 })).toThrow(/no tokens/);
  });

  it("leaks no blocks under random arrivals, cancels and preemptions", () => {
    let seed = 12345;
    const rand = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const s = new Scheduler({ numBlocks: 24, blockSize: 4, maxContext: 64, maxBatchTokens: 16, maxSeqs: 6 });
    let next = 0;
    const live = new Set<string>();
    for (let step = 0; step < 2000; step++) {
      if (rand() < 0.3) {
        const id = `r${next++}`;
        const shared = rand() < 0.5 ? prompt(8) : [];
        if (
          s.add({
            id,
            prompt: [...shared, ...prompt(1 + Math.floor(rand() * 20), 1000 + next)],
            maxTokens: Math.floor(rand() * 12),
          })
        )
          live.add(id);
      }
      if (rand() < 0.05 && live.size) {
        const id = [...live][Math.floor(rand() * live.size)];
        s.cancel(id);
        live.delete(id);
      }
      if (!s.hasWork()) continue;
      const plan = s.schedule();
      if (rand() < 0.05 && plan.seqs.length) s.cancel(plan.seqs[0].id); // cancelled while running
      const f = s.update({
        sampled: plan.seqs.filter((q) => q.sample && s.tokensOf(q.id)).map((q) => ({ id: q.id, token: 3 })),
      });
      for (const x of f) live.delete(x.id);
      s.pool.check();
    }
    for (const id of live) s.cancel(id);
    expect(s.pool.usedBlocks).toBe(0);
    expect(s.preemptionCount).toBeGreaterThan(0);
  });

  it("finishes every admitted request once arrivals stop (no livelock under preemption and prefix reuse)", () => {
    const configs = [
      { numBlocks: 24, blockSize: 4, maxContext: 64, maxBatchTokens: 16, maxSeqs: 6 },
      { numBlocks: 16, blockSize: 4, maxContext: 64, maxBatchTokens: 8, maxSeqs: 16 },
      { numBlocks: 64, blockSize: 16, maxContext: 256, maxBatchTokens: 128, maxSeqs: 16 },
    ];
    for (const [c, config] of configs.entries()) {
      for (let trial = 0; trial < 5; trial++) {
        let seed = 777 + 31 * trial + 1000 * c;
        const rand = () => {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
          return seed / 2 ** 32;
        };
        const s = new Scheduler({ ...config, maxQueue: 32 });
        const live = new Set<string>();
        let next = 0;
        const step = () => {
          const plan = s.schedule();
          const f = s.update({
            sampled: plan.seqs.filter((q) => q.sample).map((q) => ({ id: q.id, token: 3 + (q.start % 5) })),
          });
          for (const x of f) live.delete(x.id);
          // A request may also end early (EOS / stop string), as the engine does.
          for (const q of plan.seqs)
            if (live.has(q.id) && rand() < 0.02) {
              s.finish(q.id);
              live.delete(q.id);
            }
          s.pool.check();
        };
        for (let i = 0; i < 400; i++) {
          if (rand() < 0.5) {
            const id = `r${next++}`;
            const shared = rand() < 0.6 ? prompt(Math.floor(rand() * 3) * config.blockSize + 5) : [];
            const own = prompt(1 + Math.floor(rand() * 12), 1000 + next);
            const room = s.maxSequenceTokens - shared.length - own.length;
            if (
              s.add({ id, prompt: [...shared, ...own], maxTokens: Math.floor(rand() * Math.min(room, 40)) })
            )
              live.add(id);
          }
          if (rand() < 0.05 && live.size) {
            const id = [...live][Math.floor(rand() * live.size)];
            s.cancel(id);
            live.delete(id);
          }
          if (s.hasWork()) step();
        }
        let steps = 0;
        while (s.hasWork() && steps < 20_000) {
          step();
          steps++;
        }
        expect({ config: c, trial, stuck: [...live] }).toEqual({ config: c, trial, stuck: [] });
        expect(s.hasWork()).toBe(false);
        expect(s.pool.usedBlocks).toBe(0);
      }
    }
  });
});
