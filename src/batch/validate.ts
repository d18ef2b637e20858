// Every line of a batch input file is checked before the batch starts, with
// the same parsers the endpoints use (a line that passes here passes the
// route's own validation when it runs). Lines are read as a stream: a 200 MB
// file costs one line of memory at a time, plus the custom_id set.
import readline from "node:readline";
import type { Readable } from "node:stream";
import { ApiError } from "../errors.js";
import { parseChatRequest } from "../openai/chat/protocol.js";
import { parseCompletionRequest } from "../openai/completions/protocol.js";
import { parseEmbeddingRequest } from "../openai/embeddings/protocol.js";
import { parseResponsesRequest } from "../openai/responses/protocol.js";
import type { BatchEndpoint, BatchError } from "./batchStore.js";

/** OpenAI's bound on requests per batch. */
export const MAX_BATCH_LINES = 50_000;
/** Errors kept in a failed batch's `errors` (the first ones, by line). */
export const MAX_REPORTED_ERRORS = 100;

const PARSERS: Record<BatchEndpoint, (body: unknown) => unknown> = {
  "/v1/chat/completions": parseChatRequest,
  "/v1/completions": parseCompletionRequest,
  "/v1/embeddings": parseEmbeddingRequest,
  "/v1/responses": parseResponsesRequest,
};

/** One request of a batch, as its input line gives it. */
export interface BatchLine {
  customId: string;
  body: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Checks one line; returns the request, or the error (its line number set by the caller). */
export function parseLine(text: string, endpoint: BatchEndpoint): BatchLine | Omit<BatchError, "line"> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { code: "invalid_json_line", message: "This line is not valid JSON.", param: null };
  }
  if (!isObject(value)) return { code: "invalid_request", message: "Each line must be a JSON object.", param: null };
  const { custom_id: customId, method, url, body } = value;
  if (typeof customId !== "string" || customId.length === 0 || customId.length > 512) {
    return { code: "missing_required_parameter", message: "Each line needs a 'custom_id': a non-empty string of at most 512 characters.", param: "custom_id" };
  }
  if (method !== "POST") return { code: "invalid_value", message: "Invalid 'method': must be 'POST'.", param: "method" };
  if (url !== endpoint)
    return { code: "invalid_value", message: `Invalid 'url': this batch's endpoint is '${endpoint}', the line says '${String(url)}'.`, param: "url" };
  if (!isObject(body)) return { code: "missing_required_parameter", message: "Each line needs a 'body': the request's JSON object.", param: "body" };
  // A batch line's answer is a file record, never a stream.
  if (body.stream !== undefined && body.stream !== null && body.stream !== false) {
    return { code: "unsupported_parameter", message: "Invalid 'body.stream': batch requests cannot be streamed.", param: "body.stream" };
  }
  try {
    PARSERS[endpoint](body);
  } catch (err) {
    if (err instanceof ApiError) return { code: err.code, message: err.message, param: err.param === null ? "body" : `body.${err.param}` };
    throw err;
  }
  return { customId, body };
}

export interface Validation {
  total: number;
  /** The model every line names (OpenAI's batches hold one model). */
  model: string | null;
  errors: BatchError[];
}

/** Reads every line of `input`. Lines are numbered from 1; blank lines are errors, except a final newline. */
export async function validateInput(input: Readable, endpoint: BatchEndpoint, signal?: AbortSignal): Promise<Validation> {
  const errors: BatchError[] = [];
  const seen = new Set<string>();
  let model: string | null = null;
  let total = 0;
  let failed = false;
  const report = (e: Omit<BatchError, "line">, line: number) => {
    failed = true;
    if (errors.length < MAX_REPORTED_ERRORS) errors.push({ ...e, line });
  };
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const text of lines) {
      if (signal?.aborted) break;
      total++;
      if (total > MAX_BATCH_LINES) {
        // Reported first, whatever else was found: it is the reason nothing else matters.
        failed = true;
        errors.unshift({
          code: "too_many_lines",
          message: `A batch may hold at most ${MAX_BATCH_LINES} requests; this file has more.`,
          param: null,
          line: total,
        });
        if (errors.length > MAX_REPORTED_ERRORS) errors.pop();
        break;
      }
      const parsed = parseLine(text, endpoint);
      if (!("customId" in parsed)) {
        report(parsed, total);
        continue;
      }
      if (seen.has(parsed.customId)) {
        report(
          {
            code: "duplicate_custom_id",
            message: `The custom_id '${parsed.customId.slice(0, 64)}' is used by an earlier line: each must be unique.`,
            param: "custom_id",
          },
          total,
        );
        continue;
      }
      seen.add(parsed.customId);
      const m = parsed.body.model as string;
      if (model === null) model = m;
      else if (m !== model)
        report(
          { code: "mismatched_model", message: `Every line of a batch must use the same model: '${model}' above, '${m}' here.`, param: "body.model" },
          total,
        );
    }
  } finally {
    lines.close();
    input.destroy();
  }
  if (total === 0) {
    failed = true;
    errors.push({ code: "empty_file", message: "The input file has no requests.", param: null, line: null });
  }
  return { total, model, errors: failed ? errors : [] };
}
