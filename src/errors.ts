// One catalogue for every error the API returns, in OpenAI's shape:
// {error: {message, type, param, code}}. Handlers throw ApiError; the error
// middleware is the only place that writes error responses.
import type { ErrorRequestHandler, RequestHandler } from "express";
import type { EngineErrorPayload } from "../engine/index.js";
import { StoreUnavailableError } from "./store/unavailable.js";

// OpenAI's 429s carry the limit that tripped as their type ("requests" or
// "tokens"); a spent budget is type and code insufficient_quota.
export type ErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "server_error"
  | "rate_limit_error"
  | "requests"
  | "tokens"
  | "insufficient_quota"
  | "permission_error";

interface CatalogueEntry {
  status: number;
  type: ErrorType;
}

const CATALOGUE = {
  invalid_json: { status: 400, type: "invalid_request_error" },
  invalid_body: { status: 400, type: "invalid_request_error" },
  missing_required_parameter: { status: 400, type: "invalid_request_error" },
  invalid_type: { status: 400, type: "invalid_request_error" },
  invalid_value: { status: 400, type: "invalid_request_error" },
  unsupported_parameter: { status: 400, type: "invalid_request_error" },
  unknown_parameter: { status: 400, type: "invalid_request_error" },
  invalid_prompt: { status: 400, type: "invalid_request_error" },
  context_length_exceeded: { status: 400, type: "invalid_request_error" },
  previous_response_not_found: { status: 400, type: "invalid_request_error" },
  model_not_found: { status: 404, type: "invalid_request_error" },
  invalid_api_key: { status: 401, type: "invalid_request_error" },
  model_not_allowed: { status: 403, type: "permission_error" },
  tenant_exists: { status: 409, type: "invalid_request_error" },
  rate_limit_exceeded: { status: 429, type: "requests" },
  insufficient_quota: { status: 429, type: "insufficient_quota" },
  queue_full: { status: 429, type: "rate_limit_error" },
  engine_crash_quarantine: { status: 429, type: "rate_limit_error" },
  not_found: { status: 404, type: "not_found_error" },
  misdirected_request: { status: 421, type: "invalid_request_error" },
  request_too_large: { status: 413, type: "invalid_request_error" },
  unsupported_media_type: { status: 415, type: "invalid_request_error" },
  engine_unavailable: { status: 503, type: "server_error" },
  model_not_loaded: { status: 503, type: "server_error" },
  queue_timeout: { status: 503, type: "server_error" },
  quota_unavailable: { status: 503, type: "server_error" },
  engine_restarted: { status: 503, type: "server_error" },
  database_unavailable: { status: 503, type: "server_error" },
  batch_preempted: { status: 503, type: "server_error" },
  engine_error: { status: 500, type: "server_error" },
  internal_error: { status: 500, type: "server_error" },
} satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof CATALOGUE;

export interface ApiErrorExtras {
  /** Overrides the catalogue's type (a 429 names the limit: "requests" or "tokens"). */
  type?: ErrorType;
  /** Extra response headers (x-ratelimit-*, retry-after-ms, x-should-retry). */
  headers?: Record<string, string>;
}

export class ApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly headers: Record<string, string>;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly param: string | null = null,
    /** Seconds a client should wait before retrying, sent as `retry-after`. */
    readonly retryAfterSeconds: number | null = null,
    extras: ApiErrorExtras = {},
  ) {
    super(message);
    const entry: CatalogueEntry = CATALOGUE[code];
    this.status = entry.status;
    this.type = extras.type ?? entry.type;
    this.headers = extras.headers ?? {};
  }

  toJSON(): { error: { message: string; type: ErrorType; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** retry-after of a database_unavailable answer: a database restart or failover takes seconds. */
export const DATABASE_RETRY_AFTER_SECONDS = 2;

export function fromEngineError(e: EngineErrorPayload): ApiError {
  const retry = e.retryAfterSeconds ?? (e.code === "engine_unavailable" || e.code === "engine_restarted" ? 1 : null);
  return new ApiError(e.code, e.message, e.param, retry);
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new ApiError("not_found", `Unknown request URL: ${req.method} ${req.path}.`));
};

/** Maps body-parser failures and anything unexpected into the catalogue. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  // The shared database is down or restarting: retryable, and the client is told so (the cause goes to the log, not to the client).
  if (err instanceof StoreUnavailableError) {
    return new ApiError(
      "database_unavailable",
      "The database that keeps this data is unavailable right now. Please retry shortly.",
      null,
      DATABASE_RETRY_AFTER_SECONDS,
    );
  }
  const e = err as { type?: string; status?: number; limit?: number; message?: string };
  if (e?.type === "entity.parse.failed") {
    return new ApiError("invalid_json", "We could not parse the JSON body of your request: it is not valid JSON.");
  }
  if (e?.type === "entity.too.large") {
    return new ApiError("request_too_large", `The request body exceeds the limit of ${e.limit} bytes.`);
  }
  if (e?.type === "encoding.unsupported" || e?.type === "charset.unsupported") {
    return new ApiError("unsupported_media_type", e.message ?? "Unsupported body encoding.");
  }
  if (typeof e?.status === "number" && e.status >= 400 && e.status < 500) {
    return new ApiError("invalid_body", e.message ?? "The request body could not be read.");
  }
  return new ApiError("internal_error", "The server had an error while processing your request.");
}

export function errorHandler(onInternal: (err: unknown) => void): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    const apiErr = toApiError(err);
    if (apiErr.code === "internal_error") onInternal(err);
    if (res.headersSent) {
      res.end();
      return;
    }
    if (apiErr.retryAfterSeconds !== null) res.setHeader("retry-after", String(apiErr.retryAfterSeconds));
    for (const [name, value] of Object.entries(apiErr.headers)) res.setHeader(name, value);
    res.status(apiErr.status).json(apiErr.toJSON());
  };
}
