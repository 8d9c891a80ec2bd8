import { RyzansteinError } from "@ryzanstein/core-tensor";
import { chainHash } from "./hash.js";

/** A block copy the engine must perform before the next forward pass (copy-on-write). */
export interface BlockCopy {
  /** Block whose K/V rows are copied. */
  src: number;
  /** Block that receives them. */
  dst: number;
}

/** Counters of a {@link KvBlockPool}. */
export interface BlockPoolStats {
  /** Blocks in the pool. */
  total: number;
  /** Blocks referenced by at least one sequence. */
  used: number;
  /** Unreferenced blocks that still hold a cached prefix (evictable, LRU). */
  cached: number;
  /** Blocks that hold nothing. */
  empty: number;
  /** Prompt tokens looked up in the prefix cache since the start. */
  queriedTokens: number;
  /** Of those, tokens found (their K/V reused). */
  hitTokens: number;
}

interface SeqBlocks {
  /** Block ids, position p lives in blocks[floor(p / blockSize)]. */
  blocks: number[];
  /** Chain hashes of the leading full blocks registered in the cache so far. */
  hashes: string[];
}

/**
 * A fixed pool of KV-cache blocks of `blockSize` positions each, allocated up front (the engine
 * owns the memory; this class owns the bookkeeping, as plain numbers). Sequences hold block tables;
 * blocks carry reference counts so sequences can share them (prefix caching, parallel sampling).
 * A full block gets a hash chained to the hash of the block before it, so a block stands for its
 * whole prefix: a new prompt reuses every leading block whose chain hash is registered. Blocks
 * nobody references keep their content and hash until they are needed again, evicted least
 * recently used first. Writing into a shared block first copies it (copy-on-write).
 */
export class KvBlockPool {
  /** Blocks in the pool. */
  readonly numBlocks: number;
  /** Positions per block. */
  readonly blockSize: number;
  private readonly refs: Int32Array;
  private readonly blockHash: (string | undefined)[];
  private readonly byHash = new Map<string, number>();
  private readonly empty: number[] = [];
  /** Unreferenced blocks with a hash, oldest first (Map keeps insertion order). */
  private readonly lru = new Map<number, true>();
  private readonly seqs = new Map<string, SeqBlocks>();
  private queried = 0;
  private hits = 0;

  constructor(numBlocks: number, blockSize: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1)
      throw new RyzansteinError("INVALID_ARGUMENT", `numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1)
      throw new RyzansteinError("INVALID_ARGUMENT", `blockSize must be a positive integer, got ${blockSize}`);
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.refs = new Int32Array(numBlocks);
    this.blockHash = new Array(numBlocks).fill(undefined);
    for (let b = numBlocks - 1; b >= 0; b--) this.empty.push(b);
  }

  /** Blocks that can be allocated now (empty plus evictable cached ones). */
  get freeBlocks(): number {
    return this.empty.length + this.lru.size;
  }

  /** Blocks referenced by at least one sequence. */
  get usedBlocks(): number {
    return this.numBlocks - this.freeBlocks;
  }

  /** Counters for metrics. */
  stats(): BlockPoolStats {
    return {
      total: this.numBlocks,
      used: this.usedBlocks,
      cached: this.lru.size,
      empty: this.empty.length,
      queriedTokens: this.queried,
      hitTokens: this.hits,
    };
  }

  /** Blocks needed to hold `positions` positions. */
  blocksFor(positions: number): number {
    return Math.ceil(positions / this.blockSize);
  }

  /** True if the pool tracks sequence `seq`. */
  has(seq: string): boolean {
    return this.seqs.has(seq);
  }

  /** The block table of `seq` (read-only view; do not keep it across calls that change the pool). */
  table(seq: string): readonly number[] {
    return this.get(seq).blocks;
  }

  /**
   * How many leading tokens of `tokens` have their K/V in cached full blocks (a multiple of the
   * block size). Read-only: nothing is referenced.
   */
  cachedPrefix(tokens: ArrayLike<number>): number {
    let parent = "";
    let n = 0;
    for (let end = this.blockSize; end <= tokens.length; end += this.blockSize) {
      const h = chainHash(parent, tokens, end - this.blockSize, end);
      if (!this.byHash.has(h)) break;
      parent = h;
      n = end;
    }
    return n;
  }

  /** Of the cached blocks covering the first `upTo` tokens of `tokens`, how many are unreferenced (free). */
  freeCachedAmong(tokens: ArrayLike<number>, upTo: number): number {
    let parent = "";
    let n = 0;
    for (let end = this.blockSize; end <= Math.min(tokens.length, upTo); end += this.blockSize) {
      const h = chainHash(parent, tokens, end - this.blockSize, end);
      const b = this.byHash.get(h);
      if (b === undefined) break;
      if (this.refs[b] === 0) n++;
      parent = h;
    }
    return n;
  }

  /**
   * Starts sequence `seq` over `tokens`: references every cached leading full block (at most
   * `maxCached` tokens' worth) and returns how many tokens they cover. No new block is allocated
   * here; call {@link ensure} for the positions to compute.
   */
  open(seq: string, tokens: ArrayLike<number>, maxCached = tokens.length): number {
    if (this.seqs.has(seq)) throw new RyzansteinError("INVALID_ARGUMENT", `sequence ${seq} is already open`);
    const s: SeqBlocks = { blocks: [], hashes: [] };
    let parent = "";
    for (let end = this.blockSize; end <= Math.min(tokens.length, maxCached); end += this.blockSize) {
      const h = chainHash(parent, tokens, end - this.blockSize, end);
      const b = this.byHash.get(h);
      if (b === undefined) break;
      this.ref(b);
      s.blocks.push(b);
      s.hashes.push(h);
      parent = h;
    }
    this.seqs.set(seq, s);
    const cached = s.blocks.length * this.blockSize;
    this.queried += tokens.length;
    this.hits += cached;
    return cached;
  }

  /**
   * Makes room for `positions` positions in `seq` (appending blocks). Returns false, changing
   * nothing, when the pool lacks the blocks.
   */
  ensure(seq: string, positions: number): boolean {
    const s = this.get(seq);
    const need = this.blocksFor(positions) - s.blocks.length;
    if (need <= 0) return true;
    if (need > this.freeBlocks) return false;
    for (let i = 0; i < need; i++) s.blocks.push(this.take());
    return true;
  }

  /**
   * Prepares `seq` for writing positions `from..to-1`: every shared block in that range is
   * replaced by a private copy. Returns the copies the engine must perform first, or `undefined`
   * when the pool lacks blocks for them (nothing changed then).
   */
  prepareWrite(seq: string, from: number, to: number): BlockCopy[] | undefined {
    const s = this.get(seq);
    const first = Math.floor(from / this.blockSize);
    const last = Math.min(s.blocks.length, this.blocksFor(to)) - 1;
    const shared: number[] = [];
    for (let i = first; i <= last; i++) if (this.refs[s.blocks[i]] > 1) shared.push(i);
    if (shared.length > this.freeBlocks) return undefined;
    const copies: BlockCopy[] = [];
    for (const i of shared) {
      const src = s.blocks[i];
      const dst = this.take();
      this.unref(src);
      s.blocks[i] = dst;
      copies.push({ src, dst });
      if (i < s.hashes.length) s.hashes.length = i; // the private copy is not registered
    }
    return copies;
  }

  /**
   * Registers in the prefix cache every full block of `seq` whose positions are all computed
   * (`computed` = positions with K/V written, `tokens` = the sequence's token ids).
   */
  commit(seq: string, tokens: ArrayLike<number>, computed: number): void {
    const s = this.get(seq);
    const full = Math.min(Math.floor(computed / this.blockSize), s.blocks.length);
    for (let i = s.hashes.length; i < full; i++) {
      const h = chainHash(
        i === 0 ? "" : s.hashes[i - 1],
        tokens,
        i * this.blockSize,
        (i + 1) * this.blockSize,
      );
      s.hashes.push(h);
      const b = s.blocks[i];
      if (this.blockHash[b] === undefined && !this.byHash.has(h)) {
        this.blockHash[b] = h;
        this.byHash.set(h, b);
      }
    }
  }

  /** A new sequence `child` sharing every block of `parent` (copy-on-write on later writes). */
  fork(parent: string, child: string): void {
    const p = this.get(parent);
    if (this.seqs.has(child))
      throw new RyzansteinError("INVALID_ARGUMENT", `sequence ${child} is already open`);
    for (const b of p.blocks) this.ref(b);
    this.seqs.set(child, { blocks: [...p.blocks], hashes: [...p.hashes] });
  }

  /**
   * Releases every block of `seq` (tail first, so a prefix's tail is evicted before its head).
   * Unknown sequences are ignored.
   */
  free(seq: string): void {
    const s = this.seqs.get(seq);
    if (!s) return;
    this.seqs.delete(seq);
    for (let i = s.blocks.length - 1; i >= 0; i--) this.unref(s.blocks[i]);
  }

  /** Checks the internal invariants (tests): reference counts equal table references. */
  check(): void {
    const counts = new Int32Array(this.numBlocks);
    for (const s of this.seqs.values()) for (const b of s.blocks) counts[b]++;
    for (let b = 0; b < this.numBlocks; b++) {
      if (counts[b] !== this.refs[b])
        throw new Error(`block ${b}: ref ${this.refs[b]} but ${counts[b]} users`);
    }
    const free = new Set([...this.empty, ...this.lru.keys()]);
    if (free.size !== this.empty.length + this.lru.size) throw new Error("a block is free twice");
    for (let b = 0; b < this.numBlocks; b++) {
      if ((this.refs[b] === 0) !== free.has(b)) throw new Error(`block ${b} is free and used, or neither`);
    }
  }

  private get(seq: string): SeqBlocks {
    const s = this.seqs.get(seq);
    if (!s) throw new RyzansteinError("INVALID_ARGUMENT", `unknown sequence ${seq}`);
    return s;
  }

  private ref(b: number): void {
    if (this.refs[b] === 0) this.lru.delete(b);
    this.refs[b]++;
  }

  private unref(b: number): void {
    this.refs[b]--;
    if (this.refs[b] > 0) return;
    if (this.blockHash[b] !== undefined) this.lru.set(b, true);
    else this.empty.push(b);
  }

  /** An unreferenced block: an empty one, else the least recently used cached one (evicted). */
  private take(): number {
    let b = this.empty.pop();
    if (b === undefined) {
      const oldest = this.lru.keys().next();
      if (oldest.done) throw new RyzansteinError("INVALID_ARGUMENT", "the KV block pool is exhausted");
      b = oldest.value;
      this.lru.delete(b);
      const h = this.blockHash[b] as string;
      this.byHash.delete(h);
      this.blockHash[b] = undefined;
    }
    this.refs[b] = 1;
    return b;
  }
}
