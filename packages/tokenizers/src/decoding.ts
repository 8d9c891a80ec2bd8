/**
 * Token → bytes and ids → text (internal, except {@link StreamingDecoder}), following llama.cpp's
 * `token_to_piece` and `detokenize`.
 */
import { CHAR_TO_BYTE } from "./bpe.js";
import type { Tokenizer } from "./types.js";
import { Attr, type Vocab } from "./vocab.js";

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Compute the bytes of one token with specials rendered (llama.cpp `token_to_piece(special=true)`). */
export function computePiece(vocab: Vocab, id: number): Uint8Array {
  const attr = vocab.attrs[id];
  const text = vocab.tokens[id];
  if (attr & (Attr.Unknown | Attr.Control | Attr.UserDefined)) return utf8.encode(text);
  if (attr & Attr.Normal) {
    if (vocab.model === "llama") return utf8.encode(text.replaceAll("\u2581", " "));
    return byteLevelDecode(text);
  }
  if (attr & Attr.Byte) {
    if (/^<0x[0-9A-Fa-f]{2}>$/.test(text)) return Uint8Array.of(Number.parseInt(text.slice(3, 5), 16));
    // a byte token in GPT-2 notation
    return byteLevelDecode(text);
  }
  return EMPTY;
}

/** GPT-2 byte characters → bytes; characters outside the table become `[UNK_BYTE_0x..]` like llama.cpp. */
function byteLevelDecode(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const code = ch.codePointAt(0) as number;
    const b = code < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[code] : -1;
    if (b >= 0) {
      out.push(b);
    } else {
      const hex = Array.from(utf8.encode(ch), (x) => x.toString(16).padStart(2, "0")).join("");
      for (const x of utf8.encode(`[UNK_BYTE_0x${hex}${text}]`)) out.push(x);
    }
  }
  return Uint8Array.from(out);
}

/** llama.cpp's `clean_spaces` post-processing, applied on the UTF-8 bytes. */
export function cleanSpaces(bytes: Uint8Array): Uint8Array {
  const SP = 0x20;
  const Q = 0x27;
  let text = Array.from(bytes);
  // pass 1: " ?", " !", " .", " ," → drop the space
  let out: number[] = text.length ? [text[0]] : [];
  for (let i = 1; i < text.length; i++) {
    const x = text[i];
    if (text[i - 1] === SP && (x === 0x3f || x === 0x21 || x === 0x2e || x === 0x2c)) out.pop();
    out.push(x);
  }
  // pass 2: " ' " → "'"
  text = out;
  out = text.length ? [text[0]] : [];
  for (let i = 1; i < text.length; i++) {
    const x = text[i];
    if (x === Q && i + 1 < text.length && text[i - 1] === SP && text[i + 1] === SP) {
      out.pop();
      out.push(x);
      text[i + 1] = 0; // llama.cpp blanks the skipped space in place
      i++;
      continue;
    }
    out.push(x);
  }
  // pass 3: " 's", " 'm", " 're", " 've" → drop the space
  text = out;
  out = text.length ? [text[0]] : [];
  for (let i = 1; i < text.length; i++) {
    const x = text[i];
    if (text[i - 1] === SP && x === Q && i + 1 < text.length) {
      const x1 = text[i + 1];
      if (x1 === 0x73 || x1 === 0x6d) out.pop();
      else if (i + 2 < text.length) {
        const x2 = text[i + 2];
        if ((x1 === 0x72 && x2 === 0x65) || (x1 === 0x76 && x2 === 0x65)) out.pop();
      }
    }
    out.push(x);
  }
  return Uint8Array.from(out);
}

/** Options of {@link StreamingDecoder}. */
export interface StreamingDecoderOptions {
  /** Print nothing for control and unknown tokens (BOS, EOS, ...). Default: true. */
  skipSpecial?: boolean;
  /**
   * Strip the SentencePiece add-space-prefix space from the first text token. Default: false — a
   * stream usually continues a prompt that was printed already.
   */
  stripLeadingSpace?: boolean;
}

/**
 * Turns a stream of token ids into text as they are generated, holding back incomplete UTF-8
 * sequences (e.g. an emoji spread over four `<0xNN>` byte tokens) until they are complete.
 *
 * @example
 * ```ts
 * const dec = new StreamingDecoder(tokenizer);
 * for (const id of generate()) process.stdout.write(dec.push(id));
 * process.stdout.write(dec.flush());
 * ```
 */
export class StreamingDecoder {
  private readonly decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  private readonly skipSpecial: boolean;
  private stripPending: boolean;

  /**
   * @param tokenizer - the tokenizer whose ids will be pushed
   * @param options - see {@link StreamingDecoderOptions}
   */
  constructor(
    private readonly tokenizer: Tokenizer,
    options: StreamingDecoderOptions = {},
  ) {
    this.skipSpecial = options.skipSpecial ?? true;
    this.stripPending = (options.stripLeadingSpace ?? false) && tokenizer.addSpacePrefix;
  }

  /** Add one token; returns the text that became complete (possibly ""). */
  push(id: number): string {
    let piece = this.tokenizer.tokenToPiece(id, { skipSpecial: this.skipSpecial });
    if (piece.length === 0) return "";
    if (this.stripPending) {
      this.stripPending = false;
      if (piece[0] === 0x20) piece = piece.subarray(1);
    }
    return this.decoder.decode(piece, { stream: true });
  }

  /** Add several tokens; returns the text that became complete. */
  pushAll(ids: Iterable<number>): string {
    let s = "";
    for (const id of ids) s += this.push(id);
    return s;
  }

  /** End of stream: returns any held-back bytes (an incomplete sequence becomes U+FFFD) and resets. */
  flush(): string {
    return this.decoder.decode();
  }
}
