/**
 * Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), a port of llama.cpp's
 * `llm_tokenizer_bpe_session` (internal): text is split into pre-tokens by the vocabulary's
 * pre-tokenizer, each pre-token is mapped byte-by-byte to GPT-2's printable "byte characters", and
 * pairs are merged by rank from a min-heap (ties: leftmost first). Results are cached per pre-token.
 */
import { Heap } from "./heap.js";
import { preTokenize } from "./pre-tokenizers.js";
import type { Vocab } from "./vocab.js";

/** GPT-2 `bytes_to_unicode`: byte value → printable character. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const map: string[] = new Array(256);
  const keep = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (keep(b)) map[b] = String.fromCharCode(b);
    else map[b] = String.fromCharCode(256 + n++);
  }
  return map;
})();

/** Inverse of {@link BYTE_TO_CHAR}: character code → byte value (−1 if not a byte character). */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const inv = new Int16Array(512).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => {
    inv[c.charCodeAt(0)] = b;
  });
  return inv;
})();

interface Bigram {
  left: number;
  right: number;
  rank: number;
  size: number;
}

const utf8 = new TextEncoder();
const CACHE_LIMIT = 20_000;

/** Byte-level BPE encoder bound to one vocabulary (keeps a per-word cache). */
export class BpeEncoder {
  private readonly cache = new Map<string, number[]>();

  constructor(private readonly vocab: Vocab) {}

  /** Tokenize one text fragment (no special tokens) and append ids to `out`. */
  tokenize(text: string, out: number[]): void {
    const pre = this.vocab.pre;
    if (!pre) throw new Error("BpeEncoder needs a pre-tokenizer");
    for (const word of preTokenize(text, pre)) {
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.encodeWord(word);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  private encodeWord(rawWord: string): number[] {
    const { textToId, bpeRanks } = this.vocab;
    let word = "";
    for (const b of utf8.encode(rawWord)) word += BYTE_TO_CHAR[b];

    if (this.vocab.pre?.ignoreMerges) {
      const id = textToId.get(word);
      if (id !== undefined) return [id];
    }

    // every byte character is one UTF-16 unit, so symbol i starts at i
    const count = word.length;
    if (count === 0) return [];
    const len = new Int32Array(count).fill(1);
    const prev = new Int32Array(count);
    const next = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 === count ? -1 : i + 1;
    }
    const queue = new Heap<Bigram>((a, b) => a.rank < b.rank || (a.rank === b.rank && a.left < b.left));
    const addBigram = (left: number, right: number) => {
      if (left === -1 || right === -1) return;
      const rank = bpeRanks.get(`${word.substr(left, len[left])} ${word.substr(right, len[right])}`);
      if (rank === undefined) return;
      queue.push({ left, right, rank, size: len[left] + len[right] });
    };
    for (let i = 1; i < count; i++) addBigram(i - 1, i);

    for (let b = queue.pop(); b !== undefined; b = queue.pop()) {
      const { left, right } = b;
      // a symbol only grows by absorbing its right neighbour, so an unchanged total size means
      // the pair text is unchanged (llama.cpp compares the strings)
      if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== b.size) continue;
      len[left] += len[right];
      len[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      addBigram(prev[left], left);
      addBigram(left, next[left]);
    }

    const ids: number[] = [];
    for (let i = 0; i !== -1; i = next[i]) {
      const s = word.substr(i, len[i]);
      const id = textToId.get(s);
      if (id !== undefined) {
        ids.push(id);
        continue;
      }
      // not a token: fall back to one token per byte character (skipped if absent)
      for (const ch of s) {
        const bid = textToId.get(ch);
        if (bid !== undefined) ids.push(bid);
      }
    }
    return ids;
  }
}
