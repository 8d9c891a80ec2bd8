import { describe, expect, it } from "vitest";
import { KvBlockPool } from "../src/index.js";

const seqOf = (n: number, base = 0) => Array.from({ length: n }, (_, i) => base + i);

describe("KvBlockPool", () => {
  it("allocates, grows and frees block tables", () => {
    const pool = new KvBlockPool(8, 4);
    expect(pool.open("a", seqOf(10))).toBe(0);
    expect(pool.ensure("a", 10)).toBe(true);
    expect(pool.table("a")).toHaveLength(3);
    expect(pool.usedBlocks).toBe(3);
    expect(pool.ensure("a", 40)).toBe(false); // needs 10 blocks, nothing changed
    expect(pool.table("a")).toHaveLength(3);
    pool.free("a");
    expect(pool.usedBlocks).toBe(0);
    pool.check();
  });

  it("reuses hash-chained full blocks of a shared prefix, and only full ones", () => {
    const pool = new KvBlockPool(16, 4);
    const a = seqOf(11);
    pool.open("a", a);
    pool.ensure("a", 11);
    pool.commit("a", a, 11); // blocks 0,1 full; block 2 partial
    const b = [...seqOf(8), 100, 101, 102, 103];
    expect(pool.cachedPrefix(b)).toBe(8);
    expect(pool.open("b", b)).toBe(8);
    expect(pool.table("b").slice(0, 2)).toEqual(pool.table("a").slice(0, 2));
    // a different first block breaks the chain even if the second block matches
    expect(pool.cachedPrefix([9, 9, 9, 9, 4, 5, 6, 7])).toBe(0);
    pool.free("a");
    pool.free("b");
    expect(pool.usedBlocks).toBe(0);
    expect(pool.stats().cached).toBe(2);
    expect(pool.stats().hitTokens).toBe(8);
    pool.check();
  });

  it("keeps unreferenced cached blocks until needed, evicting least recently used first", () => {
    const pool = new KvBlockPool(4, 2);
    const x = [1, 2, 3, 4];
    const y = [5, 6, 7, 8];
    for (const [id, t] of [
      ["x", x],
      ["y", y],
    ] as const) {
      pool.open(id, t);
      pool.ensure(id, 4);
      pool.commit(id, t, 4);
      pool.free(id);
    }
    expect(pool.freeBlocks).toBe(4);
    expect(pool.cachedPrefix(x)).toBe(4);
    // one new block evicts x's tail block (freed first, so least recent)
    pool.open("z", [0, 0]);
    pool.ensure("z", 2);
    expect(pool.cachedPrefix(x)).toBe(2);
    expect(pool.cachedPrefix(y)).toBe(4);
    pool.free("z");
    pool.check();
  });

  it("forks with shared blocks and copies on write", () => {
    const pool = new KvBlockPool(8, 4);
    const t = seqOf(6);
    pool.open("p", t);
    pool.ensure("p", 6);
    pool.fork("p", "c");
    expect(pool.usedBlocks).toBe(2);
    // the child writes position 6 (block 1, shared) -> private copy of block 1
    const copies = pool.prepareWrite("c", 6, 7);
    expect(copies).toEqual([{ src: pool.table("p")[1], dst: pool.table("c")[1] }]);
    expect(pool.table("c")[0]).toBe(pool.table("p")[0]);
    expect(pool.usedBlocks).toBe(3);
    // the parent's block 1 is now private: no copy
    expect(pool.prepareWrite("p", 6, 7)).toEqual([]);
    pool.free("p");
    pool.free("c");
    expect(pool.usedBlocks).toBe(0);
    pool.check();
  });

  it("refuses bad sizes and unknown sequences", () => {
    expect(() => new KvBlockPool(0, 16)).toThrow(/numBlocks/);
    expect(() => new KvBlockPool(4, 0)).toThrow(/blockSize/);
    expect(() => new KvBlockPool(4, 4).table("nope")).toThrow(/unknown sequence/);
  });
});
