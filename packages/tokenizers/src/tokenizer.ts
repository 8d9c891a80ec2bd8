/**
 * The {@link Tokenizer} implementation and its factory {@link createTokenizerFromGGUF}.
 */
import { BpeEncoder } from "./bpe.js";
import { cleanSpaces, computePiece } from "./decoding.js";
import { TokenizerError } from "./errors.js";
import { partitionSpecial } from "./special.js";
import { spmTokenize } from "./spm.js";
import {
  type DecodeOptions,
  type EncodeOptions,
  type PieceOptions,
  type Tokenizer,
  type TokenizerModel,
  TokenType,
} from "./types.js";
import { Attr, loadVocab, type Vocab } from "./vocab.js";

const EMPTY = new Uint8Array(0);
const SPECIAL = Attr.Control | Attr.Unknown;

class GGUFTokenizer implements Tokenizer {
  readonly model: TokenizerModel;
  readonly preTokenizer: string | null;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly eotId: number | null;
  readonly unkId: number | null;
  readonly padId: number | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly eogIds: readonly number[];

  private readonly pieces: (Uint8Array | undefined)[];
  private readonly bpe: BpeEncoder | null;

  constructor(private readonly vocab: Vocab) {
    this.model = vocab.model;
    this.preTokenizer = vocab.pre?.name ?? null;
    this.vocabSize = vocab.tokens.length;
    this.bosId = vocab.bosId;
    this.eosId = vocab.eosId;
    this.eotId = vocab.eotId;
    this.unkId = vocab.unkId;
    this.padId = vocab.padId;
    this.addBos = vocab.addBos;
    this.addEos = vocab.addEos;
    this.addSpacePrefix = vocab.addSpacePrefix;
    this.eogIds = Object.freeze([...vocab.eog].sort((a, b) => a - b));
    this.pieces = new Array(this.vocabSize);
    this.bpe = vocab.model === "gpt2" ? new BpeEncoder(vocab) : null;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TypeError("encode() expects a string");
    const v = this.vocab;
    const addBos = options.addBos ?? v.addBos;
    const addEos = options.addEos ?? v.addEos;
    const out: number[] = [];
    if (addBos) {
      if (v.bosId === null)
        throw new TokenizerError("INVALID_TOKEN", "addBos requested but the vocabulary has no BOS token");
      out.push(v.bosId);
    }
    const fragments = partitionSpecial(v, text, options.parseSpecial ?? false);
    if (this.bpe) {
      for (const f of fragments) {
        if (typeof f === "number") out.push(f);
        else this.bpe.tokenize(f, out);
      }
    } else {
      let prevSpecial = true; // the first fragment gets the space prefix
      let first = true;
      for (const f of fragments) {
        if (typeof f === "number") {
          out.push(f);
          prevSpecial = true;
          first = false;
          continue;
        }
        const prefix = first ? (options.addSpacePrefix ?? v.addSpacePrefix) : v.addSpacePrefix && prevSpecial;
        const raw = prefix ? ` ${f}` : f;
        spmTokenize(v, raw.replaceAll(" ", "\u2581"), out);
        prevSpecial = false;
        first = false;
      }
    }
    if (addEos) {
      if (v.eosId === null)
        throw new TokenizerError("INVALID_TOKEN", "addEos requested but the vocabulary has no EOS token");
      out.push(v.eosId);
    }
    return out;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skipSpecial = options.skipSpecial ?? false;
    let strip = options.stripLeadingSpace ?? this.vocab.addSpacePrefix;
    const parts: Uint8Array[] = [];
    let total = 0;
    let start = 0;
    // a hidden leading BOS does not consume the strip (HF-style "<s>▁Hello" → "Hello")
    if (skipSpecial && ids.length > 0 && ids[0] === this.vocab.bosId) start = 1;
    for (let i = start; i < ids.length; i++) {
      let p = this.tokenToPiece(ids[i], { skipSpecial });
      if (strip) {
        strip = false;
        if (p.length > 0 && p[0] === 0x20) p = p.subarray(1);
      }
      if (p.length > 0) {
        parts.push(p);
        total += p.length;
      }
    }
    let bytes: Uint8Array = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      bytes.set(p, off);
      off += p.length;
    }
    if (options.cleanSpaces ?? this.vocab.cleanSpaces) bytes = cleanSpaces(bytes);
    return new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);
  }

  tokenToPiece(id: number, options: PieceOptions = {}): Uint8Array {
    this.check(id);
    if (options.skipSpecial && this.vocab.attrs[id] & SPECIAL) return EMPTY;
    let p = this.pieces[id];
    if (p === undefined) {
      p = computePiece(this.vocab, id);
      this.pieces[id] = p;
    }
    return p;
  }

  tokenText(id: number): string {
    this.check(id);
    return this.vocab.tokens[id];
  }

  tokenId(text: string): number | undefined {
    return this.vocab.textToId.get(text);
  }

  tokenScore(id: number): number {
    this.check(id);
    return this.vocab.scores[id];
  }

  tokenType(id: number): TokenType {
    this.check(id);
    const a = this.vocab.attrs[id];
    if (a & Attr.Control) return TokenType.Control;
    if (a & Attr.UserDefined) return TokenType.UserDefined;
    if (a & Attr.Byte) return TokenType.Byte;
    if (a & Attr.Unknown) return TokenType.Unknown;
    if (a & Attr.Unused) return TokenType.Unused;
    if (a & Attr.Normal) return TokenType.Normal;
    return TokenType.Undefined;
  }

  isSpecial(id: number): boolean {
    this.check(id);
    return (this.vocab.attrs[id] & (Attr.Control | Attr.Unknown | Attr.UserDefined)) !== 0;
  }

  isEog(id: number): boolean {
    return this.vocab.eog.has(id);
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(
        "INVALID_TOKEN",
        `token id ${id} is outside the vocabulary (size ${this.vocabSize})`,
      );
    }
  }
}

/**
 * Build a {@link Tokenizer} from GGUF metadata — the `tokenizer.ggml.*` keys of a parsed GGUF file
 * (e.g. `parseGGUF(bytes).metadata` from `@ryzanstein/convert`).
 *
 * Values are plain JS: strings, `string[]`, typed arrays or `number[]` for numeric arrays,
 * `number | bigint` for integers, booleans. Keys used: `model` (`"llama"` → SentencePiece BPE with
 * scores and byte fallback; `"gpt2"` → byte-level BPE with `merges` and the pre-tokenizer named by
 * `pre`), `tokens`, `scores`, `token_type`, `merges`, `pre`, `bos/eos/eot/eom/unknown/seperator/
 * padding_token_id`, `add_bos_token`, `add_eos_token`, `add_space_prefix`.
 *
 * @param metadata - GGUF key/value metadata
 * @throws {@link TokenizerError} with code `MISSING_METADATA`, `BAD_METADATA`,
 *   `UNSUPPORTED_TOKENIZER` or `UNSUPPORTED_PRE_TOKENIZER`
 */
export function createTokenizerFromGGUF(metadata: Record<string, unknown>): Tokenizer {
  return new GGUFTokenizer(loadVocab(metadata));
}
