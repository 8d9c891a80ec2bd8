/**
 * A byte-level BPE trainer producing GGUF `gpt2`-model vocabularies (GPT-2 byte characters,
 * merges by rank) that {@link createTokenizerFromGGUF} and llama.cpp load.
 *
 * Training follows the classic algorithm on a word-frequency table: text is split into pre-tokens
 * by the pre-tokenizer the vocabulary will name, every word starts as its bytes, and the most
 * frequent adjacent pair (ties: the lexicographically smallest pair of strings, so results are
 * deterministic) is merged until the vocabulary is full.
 */
import { BYTE_TO_CHAR } from "./bpe.js";
import { preTokenize } from "./pre-tokenizers.js";

/** Options of {@link trainBpe}. */
export interface TrainBpeOptions {
  /** Largest vocabulary size, including the 256 byte tokens and `specialTokens` (≥ 256 + specials); smaller when no pair occurs twice. */
  vocabSize: number;
  /** Pre-tokenizer written as `tokenizer.ggml.pre` and used to split the text (default `gpt-2`). */
  pre?: string;
  /** Control tokens appended after the merges (default `["<|endoftext|>"]`). */
  specialTokens?: string[];
  /** Words seen fewer times than this are ignored while counting pairs (default 1). */
  minFrequency?: number;
}

/** A trained byte-level BPE vocabulary, ready to be written as GGUF `tokenizer.ggml.*` metadata. */
export interface TrainedBpe {
  /** Token strings in id order: 256 byte characters, merged pieces, then special tokens. */
  tokens: string[];
  /** Token types (1 normal, 3 control) in id order. */
  tokenTypes: Int32Array;
  /** Merges in rank order, each `"left right"`. */
  merges: string[];
  /** Pre-tokenizer name. */
  pre: string;
  /** Id of the first special token (used as BOS and EOS). */
  eosId: number;
}

/** Learns a byte-level BPE vocabulary from `text`. Deterministic for a given text and options. */
export function trainBpe(text: string, options: TrainBpeOptions): TrainedBpe {
  const pre = options.pre ?? "gpt-2";
  const specials = options.specialTokens ?? ["<|endoftext|>"];
  const target = options.vocabSize - specials.length;
  if (!Number.isInteger(options.vocabSize) || target < 256) {
    throw new RangeError(`vocabSize must be an integer ≥ ${256 + specials.length}, got ${options.vocabSize}`);
  }
  const minFreq = options.minFrequency ?? 1;
  // word (as byte characters) -> count
  const counts = new Map<string, number>();
  const utf8 = new TextEncoder();
  for (const w of preTokenize(text, pre)) {
    let s = "";
    for (const b of utf8.encode(w)) s += BYTE_TO_CHAR[b];
    counts.set(s, (counts.get(s) ?? 0) + 1);
  }
  const words: string[][] = [];
  const freq: number[] = [];
  for (const [w, c] of counts) {
    if (c < minFreq) continue;
    words.push(Array.from(w));
    freq.push(c);
  }
  const tokens: string[] = BYTE_TO_CHAR.slice();
  const merges: string[] = [];
  while (tokens.length < target) {
    const pairs = new Map<string, number>();
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      for (let j = 0; j + 1 < w.length; j++) {
        const key = `${w[j]} ${w[j + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + freq[i]);
      }
    }
    let best = "";
    let bestCount = 0;
    for (const [key, c] of pairs) {
      if (c > bestCount || (c === bestCount && key < best)) {
        best = key;
        bestCount = c;
      }
    }
    if (bestCount < 2) break;
    const sp = best.indexOf(" ");
    const left = best.slice(0, sp);
    const right = best.slice(sp + 1);
    const merged = left + right;
    merges.push(best);
    tokens.push(merged);
    for (const w of words) {
      for (let j = 0; j + 1 < w.length; j++) {
        if (w[j] === left && w[j + 1] === right) w.splice(j, 2, merged);
      }
    }
  }
  const eosId = tokens.length;
  tokens.push(...specials);
  const tokenTypes = new Int32Array(tokens.length).fill(1);
  for (let i = eosId; i < tokens.length; i++) tokenTypes[i] = 3;
  return { tokens, tokenTypes, merges, pre, eosId };
}

/** GGUF `tokenizer.ggml.*` metadata for a trained vocabulary (no BOS added on encode). */
export function bpeMetadata(bpe: TrainedBpe): Record<string, unknown> {
  return {
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": bpe.pre,
    "tokenizer.ggml.tokens": bpe.tokens,
    "tokenizer.ggml.token_type": bpe.tokenTypes,
    "tokenizer.ggml.merges": bpe.merges,
    "tokenizer.ggml.bos_token_id": bpe.eosId,
    "tokenizer.ggml.eos_token_id": bpe.eosId,
    "tokenizer.ggml.add_bos_token": false,
  };
}
