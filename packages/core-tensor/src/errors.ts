/**
 * Machine-readable error codes shared by every Ryzanstein package.
 *
 * Codes are stable strings so callers (and the CLI) can branch on them without parsing messages.
 */
export type RyzansteinErrorCode =
  | "BAD_MAGIC"
  | "UNSUPPORTED_VERSION"
  | "TRUNCATED"
  | "OUT_OF_BOUNDS"
  | "UNKNOWN_TENSOR_TYPE"
  | "UNSUPPORTED_TENSOR_TYPE"
  | "MISSING_METADATA"
  | "BAD_METADATA"
  | "UNSUPPORTED_ARCHITECTURE"
  | "ABSURD_SIZE"
  | "SHAPE_MISMATCH"
  | "INVALID_ARGUMENT"
  | "MODEL_NOT_FOUND"
  | "CONTEXT_OVERFLOW"
  | "NATIVE_ERROR"
  | "ABORTED"
  | "IO_ERROR"
  | "INSUFFICIENT_DATA"
  | "TARGET_UNREACHABLE";

/** Options for {@link RyzansteinError}. */
export interface RyzansteinErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
  /** File the error concerns, when there is one. */
  file?: string;
}

/**
 * The one error type every package throws for bad input or failed operations.
 *
 * It carries a {@link RyzansteinErrorCode} and a message written for the user, so a CLI can print
 * `message` alone and an SDK caller can switch on `code`.
 */
export class RyzansteinError extends Error {
  /** Stable machine-readable code. */
  readonly code: RyzansteinErrorCode;
  /** File the error concerns, when there is one. */
  readonly file: string | undefined;

  constructor(code: RyzansteinErrorCode, message: string, options: RyzansteinErrorOptions = {}) {
    super(options.file ? `${options.file}: ${message}` : message, { cause: options.cause });
    this.name = "RyzansteinError";
    this.code = code;
    this.file = options.file;
  }
}

/** True when `e` is a {@link RyzansteinError}, optionally with the given code. */
export function isRyzansteinError(e: unknown, code?: RyzansteinErrorCode): e is RyzansteinError {
  return e instanceof RyzansteinError && (code === undefined || e.code === code);
}
