/**
 * Machine-readable reason a {@link TokenizerError} was thrown.
 *
 * - `MISSING_METADATA`: a required `tokenizer.ggml.*` key is absent.
 * - `BAD_METADATA`: a key is present but has the wrong type, length or content
 *   (duplicate tokens, merges naming tokens that are not in the vocabulary, ...).
 * - `UNSUPPORTED_TOKENIZER`: `tokenizer.ggml.model` names a tokenizer this package does not implement.
 * - `UNSUPPORTED_PRE_TOKENIZER`: `tokenizer.ggml.pre` names a pre-tokenizer this package does not know.
 * - `INVALID_TOKEN`: a token id passed to a method is outside the vocabulary.
 */
export type TokenizerErrorCode =
  | "MISSING_METADATA"
  | "BAD_METADATA"
  | "UNSUPPORTED_TOKENIZER"
  | "UNSUPPORTED_PRE_TOKENIZER"
  | "INVALID_TOKEN";

/**
 * The one error type thrown by `@ryzanstein/tokenizers`. Check {@link TokenizerError.code} rather
 * than parsing the message.
 *
 * @example
 * ```ts
 * try { createTokenizerFromGGUF(meta) } catch (e) {
 *   if (e instanceof TokenizerError && e.code === "UNSUPPORTED_TOKENIZER") { ... }
 * }
 * ```
 */
export class TokenizerError extends Error {
  /** Machine-readable reason, see {@link TokenizerErrorCode}. */
  readonly code: TokenizerErrorCode;

  /**
   * @param code - machine-readable reason
   * @param message - human-readable explanation (the code is prefixed automatically)
   */
  constructor(code: TokenizerErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = "TokenizerError";
    this.code = code;
  }
}
