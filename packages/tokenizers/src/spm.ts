/**
 * SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`), a port of llama.cpp's
 * `llm_tokenizer_spm_session` (internal): characters are linked symbols, adjacent pairs that form a
 * vocabulary token go into a max-heap by token score (ties: leftmost first), the best pair is
 * merged and its neighbours re-queued — O(n log n). Symbols that are not tokens are re-segmented
 * through the recorded merges, and finally fall back to `<0xNN>` byte tokens.
 */
import { Heap } from "./heap.js";
import type { Vocab } from "./vocab.js";

interface Bigram {
  left: number;
  right: number;
  score: number;
  size: number;
}

const utf8 = new TextEncoder();
const HEX = "0123456789ABCDEF";

/** llama.cpp `byte_to_token` for SPM vocabularies: `<0xNN>`, else the single-character token. */
export function spmByteToToken(vocab: Vocab, byte: number): number | undefined {
  const id = vocab.textToId.get(`<0x${HEX[byte >> 4]}${HEX[byte & 15]}>`);
  if (id !== undefined) return id;
  if (byte < 0x80) return vocab.textToId.get(String.fromCharCode(byte));
  return undefined;
}

/**
 * Tokenize one text fragment (already space-escaped with U+2581) and append ids to `out`.
 */
export function spmTokenize(vocab: Vocab, text: string, out: number[]): void {
  if (text.length === 0) return;
  // symbols: one per code point; start/len in UTF-16 units
  const cap = text.length;
  const start = new Int32Array(cap);
  const len = new Int32Array(cap);
  const prev = new Int32Array(cap);
  const next = new Int32Array(cap);
  let count = 0;
  for (let off = 0; off < text.length; ) {
    const cp = text.codePointAt(off) as number;
    const l = cp > 0xffff ? 2 : 1;
    start[count] = off;
    len[count] = l;
    prev[count] = count - 1;
    off += l;
    next[count] = off === text.length ? -1 : count + 1;
    count++;
  }

  const queue = new Heap<Bigram>((a, b) => a.score > b.score || (a.score === b.score && a.left < b.left));
  const revMerge = new Map<string, [number, number]>();
  const { textToId, scores } = vocab;

  const tryAddBigram = (left: number, right: number) => {
    if (left === -1 || right === -1) return;
    const s = text.substr(start[left], len[left] + len[right]);
    const id = textToId.get(s);
    if (id === undefined) return;
    queue.push({ left, right, score: scores[id], size: s.length });
    revMerge.set(s, [left, right]);
  };

  for (let i = 1; i < count; i++) tryAddBigram(i - 1, i);

  for (let b = queue.pop(); b !== undefined; b = queue.pop()) {
    const { left, right } = b;
    if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== b.size) continue;
    len[left] += len[right];
    len[right] = 0;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    tryAddBigram(prev[left], left);
    tryAddBigram(left, next[left]);
  }

  const resegment = (sym: number) => {
    const s = text.substr(start[sym], len[sym]);
    const id = textToId.get(s);
    if (id !== undefined) {
      out.push(id);
      return;
    }
    const p = revMerge.get(s);
    if (p === undefined) {
      for (const byte of utf8.encode(s)) {
        const bid = spmByteToToken(vocab, byte);
        if (bid !== undefined) out.push(bid);
        else if (vocab.unkId !== null) out.push(vocab.unkId);
      }
      return;
    }
    resegment(p[0]);
    resegment(p[1]);
  };

  for (let i = 0; i !== -1; i = next[i]) resegment(i);
}
