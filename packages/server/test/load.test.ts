import { describe, expect, it } from "vitest";
import { runLoad } from "../bench/load.js";
import { startTestServer } from "./helpers.js";

describe("bounded load test (short version; bench/load.ts runs 64 clients × 60 s)", () => {
  it("64 clients for 10 s: no 5xx but deliberate 503s, every accepted stream ends with [DONE], no leaked blocks", async () => {
    const server = await startTestServer({ maxSeqs: 16, maxQueue: 32, contextSize: 256 });
    try {
      const r = await runLoad(server, 64, 10);
      console.log(JSON.stringify(r));
      expect(r.unexpected).toEqual([]);
      expect(r.streamsAccepted).toBeGreaterThan(10);
      expect(r.streamsWithoutDone).toBe(0);
      expect(r.cancelled).toBeGreaterThan(0);
      expect(r.kvBlocksUsedAfter).toBe(0);
      expect(server.engine.stats.running).toBe(0);
      // 10 s is too short for the heap to settle; bench/load.ts checks RSS over 60 s.
      expect(r.rssGrowth).toBeLessThan(0.6);
    } finally {
      await server.close(10_000);
    }
  });
});
