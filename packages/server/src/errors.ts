/** OpenAI's error `type` values used here. */
export type OpenAIErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "server_error"
  | "overloaded_error";

/** An error that becomes an OpenAI-shaped JSON body with an HTTP status. */
export class HttpError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** OpenAI error type. */
  readonly type: OpenAIErrorType;
  /** Offending parameter, if any. */
  readonly param: string | null;
  /** Machine-readable code, if any. */
  readonly code: string | null;
  /** Extra response headers (Retry-After). */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    init: {
      type?: OpenAIErrorType;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.type = init.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = init.param ?? null;
    this.code = init.code ?? null;
    this.headers = init.headers ?? {};
  }

  /** The JSON body: `{ error: { message, type, param, code } }`. */
  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}
