/**
 * GGUF token types (`tokenizer.ggml.token_type`), numbered as in llama.cpp's `llama_token_type`.
 */
export const TokenType = {
  /** No type recorded (0). Decodes to nothing. */
  Undefined: 0,
  /** Ordinary vocabulary entry (1). */
  Normal: 1,
  /** The unknown token, e.g. `<unk>` (2). */
  Unknown: 2,
  /** Control token such as `<s>`, `</s>`, `<|im_end|>` (3). Hidden when decoding with `skipSpecial`. */
  Control: 3,
  /** User-defined token (4): matched literally in input text and always decoded as its raw text. */
  UserDefined: 4,
  /** Reserved/unused slot (5). Decodes to nothing. */
  Unused: 5,
  /** Byte-fallback token such as `<0x0A>` (6): decodes to that single byte. */
  Byte: 6,
} as const;

/** One of the {@link TokenType} values. */
export type TokenType = (typeof TokenType)[keyof typeof TokenType];

/** Tokenizer family, from `tokenizer.ggml.model`. */
export type TokenizerModel = "llama" | "gpt2";

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the BOS token. Default: {@link Tokenizer.addBos} (from `tokenizer.ggml.add_bos_token`). */
  addBos?: boolean;
  /** Append the EOS token. Default: {@link Tokenizer.addEos} (from `tokenizer.ggml.add_eos_token`). */
  addEos?: boolean;
  /**
   * Recognise control and unknown tokens (e.g. `<|im_end|>`, `</s>`) written literally in the text,
   * longest first, as llama.cpp's `tokenizer_st_partition` does. User-defined tokens are always
   * recognised. Default: false.
   */
  parseSpecial?: boolean;
  /**
   * SentencePiece: prepend a space to the text before its first fragment (after a special token one
   * is always prepended when the vocabulary asks for it). Default: {@link Tokenizer.addSpacePrefix}.
   * False encodes a piece of text that continues earlier text (e.g. one turn of a chat).
   */
  addSpacePrefix?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop control and unknown tokens (BOS, EOS, `<|im_end|>`, ...) instead of rendering their text. Default: false. */
  skipSpecial?: boolean;
  /**
   * Remove the single leading space that the SentencePiece add-space-prefix rule inserted.
   * Default: true when the vocabulary adds a space prefix (`llama` models). The space is stripped
   * from the first token, or from the token after a leading BOS when `skipSpecial` hides it.
   */
  stripLeadingSpace?: boolean;
  /**
   * Apply llama.cpp's `clean_spaces` post-processing (" ," → ",", " 's" → "'s", ...). Default: the
   * vocabulary's setting (true for most byte-level BPE pre-tokenizers, false for `llama`).
   */
  cleanSpaces?: boolean;
}

/** Options of {@link Tokenizer.tokenToPiece}. */
export interface PieceOptions {
  /** Return an empty piece for control and unknown tokens. Default: false. */
  skipSpecial?: boolean;
}

/**
 * A text ⇄ token-id converter built from GGUF `tokenizer.ggml.*` metadata
 * (see `createTokenizerFromGGUF`). Instances are immutable and safe to share.
 */
export interface Tokenizer {
  /** Tokenizer family (`tokenizer.ggml.model`). */
  readonly model: TokenizerModel;
  /** Canonical pre-tokenizer name for byte-level BPE (e.g. `"gpt2"`, `"llama3"`), null for `llama`. */
  readonly preTokenizer: string | null;
  /** Number of tokens in the vocabulary. */
  readonly vocabSize: number;
  /** Beginning-of-sequence token id, or null. */
  readonly bosId: number | null;
  /** End-of-sequence token id, or null. */
  readonly eosId: number | null;
  /** End-of-turn token id (`tokenizer.ggml.eot_token_id`, or detected by text like `<|eot_id|>`), or null. */
  readonly eotId: number | null;
  /** Unknown token id, or null. */
  readonly unkId: number | null;
  /** Padding token id, or null. */
  readonly padId: number | null;
  /** Whether {@link Tokenizer.encode} adds BOS by default. */
  readonly addBos: boolean;
  /** Whether {@link Tokenizer.encode} adds EOS by default. */
  readonly addEos: boolean;
  /** Whether a space is prepended to the text before SentencePiece encoding. */
  readonly addSpacePrefix: boolean;
  /** Every token id that ends generation (EOS, EOT, EOM, `<|im_end|>`, ...), ascending. */
  readonly eogIds: readonly number[];

  /** Encode text to token ids. */
  encode(text: string, options?: EncodeOptions): number[];
  /** Decode token ids to text (invalid UTF-8 becomes U+FFFD). */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  /**
   * The bytes a token stands for, as llama.cpp's `token_to_piece` returns them: byte tokens give one
   * byte, so a piece may be an incomplete UTF-8 sequence. Use {@link StreamingDecoder} to print
   * tokens as they arrive. The returned array is shared: do not modify it.
   */
  tokenToPiece(id: number, options?: PieceOptions): Uint8Array;
  /** The raw vocabulary string of a token (e.g. `"▁Hello"`, `"<0x0A>"`, `"Ġworld"`). */
  tokenText(id: number): string;
  /** The id of a vocabulary string, or undefined. */
  tokenId(text: string): number | undefined;
  /** Score of a token (`tokenizer.ggml.scores`, 0 when absent). */
  tokenScore(id: number): number;
  /** Effective type of a token (after llama.cpp's auto-detection of control tokens). */
  tokenType(id: number): TokenType;
  /** True for control, unknown and user-defined tokens (the ones `parseSpecial` can match). */
  isSpecial(id: number): boolean;
  /** True if generating this token should stop generation. */
  isEog(id: number): boolean;
}
