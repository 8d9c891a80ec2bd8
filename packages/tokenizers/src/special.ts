/**
 * Special-token partitioning (internal), as llama.cpp's `tokenizer_st_partition`: for each special
 * token, longest first, every raw-text fragment is split around its occurrences.
 */
import { Attr, type Vocab } from "./vocab.js";

/** A piece of input: raw text still to tokenize, or an already-recognised token id. */
export type Fragment = string | number;

/**
 * Split text around special tokens. Control and unknown tokens are only matched when
 * `parseSpecial` is true; user-defined tokens are always matched.
 */
export function partitionSpecial(vocab: Vocab, text: string, parseSpecial: boolean): Fragment[] {
  let fragments: Fragment[] = text.length > 0 ? [text] : [];
  for (const id of vocab.specialTokens) {
    if (!parseSpecial && vocab.attrs[id] & (Attr.Control | Attr.Unknown)) continue;
    const tok = vocab.tokens[id];
    let changed = false;
    const next: Fragment[] = [];
    for (const f of fragments) {
      if (typeof f !== "string" || f.length < tok.length) {
        next.push(f);
        continue;
      }
      let from = 0;
      for (let at = f.indexOf(tok); at >= 0; at = f.indexOf(tok, from)) {
        if (at > from) next.push(f.slice(from, at));
        next.push(id);
        from = at + tok.length;
        changed = true;
      }
      if (from === 0) next.push(f);
      else if (from < f.length) next.push(f.slice(from));
    }
    if (changed) fragments = next;
  }
  return fragments;
}
