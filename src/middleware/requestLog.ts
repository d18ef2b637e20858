// Request ids and access logs. Every response carries `x-request-id` (the
// client's own when it is sane, else a generated `req_…`, as OpenAI does), and
// every request leaves exactly one log line when its response finishes or its
// client goes away. Prompts and completions never reach that line; with
// logContent the request's messages/prompt go to a separate debug line.
import { randomBytes } from "node:crypto";
import type { Request, RequestHandler, Response } from "express";
import type { Usage } from "../../engine/index.js";
import type { Logger } from "../logger.js";

declare global {
  namespace Express {
    interface Locals {
      /** This request's id, as sent in the x-request-id response header. */
      requestId: string;
      /** The model name the request asked for (set once a generation is validated). */
      model?: string;
      /** Exact usage of a generation request (set when the engine reports it). */
      usage?: Usage;
    }
  }
}

export const REQUEST_ID_HEADER = "x-request-id";
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const GENERATION_PATHS = new Set(["/v1/chat/completions", "/v1/completions"]);

export interface RequestLogOptions {
  log: Logger;
  /** Log the request body's messages/prompt at debug level (opt-in: it is user data). */
  logContent: boolean;
}

/** The client's x-request-id when it is one short token of safe characters, else a fresh one. */
export function requestIdFor(header: string | string[] | undefined): string {
  if (typeof header === "string" && SANE_REQUEST_ID.test(header)) return header;
  return `req_${randomBytes(16).toString("hex")}`;
}

export function requestLog(opts: RequestLogOptions): RequestHandler {
  return (req, res, next) => {
    const startedAt = performance.now();
    const requestId = requestIdFor(req.headers[REQUEST_ID_HEADER]);
    res.locals.requestId = requestId;
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const path = req.path;
    const firstByteAt = GENERATION_PATHS.has(path) ? watchFirstByte(res) : null;

    res.once("close", () => {
      const usage = res.locals.usage;
      const bodyModel = bodyField(req, "model");
      const model = res.locals.model ?? (typeof bodyModel === "string" ? bodyModel.slice(0, 256) : undefined);
      opts.log.info(
        {
          requestId,
          method: req.method,
          path,
          status: res.statusCode,
          tenant: res.locals.tenant?.id,
          model,
          promptTokens: usage?.promptTokens,
          completionTokens: usage?.completionTokens,
          cachedTokens: usage?.cachedTokens,
          queueMs: usage?.queueMs,
          ttftMs: firstByteAt?.at === undefined ? undefined : round(firstByteAt.at - startedAt),
          durationMs: round(performance.now() - startedAt),
          clientDisconnected: !res.writableFinished,
          // Closed by the server: the client read nothing for the SSE stall timeout (src/sse.ts).
          slowReaderClosed: res.locals.slowReader === true ? true : undefined,
          traceId: res.locals.traceId,
        },
        "request",
      );
      if (opts.logContent) {
        const messages = bodyField(req, "messages");
        const prompt = bodyField(req, "prompt");
        // The Responses API's content: its input items and instructions.
        const input = bodyField(req, "input");
        const instructions = bodyField(req, "instructions");
        if (messages !== undefined || prompt !== undefined || input !== undefined || instructions !== undefined) {
          opts.log.debug({ requestId, messages, prompt, input, instructions }, "request content");
        }
      }
    });
    next();
  };
}

/**
 * Records when the first body byte is written: wraps res.write/res.end until
 * their first call, then puts the originals back, so the hot path per token
 * is untouched. (SseWriter.open flushes headers only, which does not count.)
 */
function watchFirstByte(res: Response): { at: number | undefined } {
  const mark: { at: number | undefined } = { at: undefined };
  const write = res.write;
  const end = res.end;
  const restore = () => {
    mark.at = performance.now();
    res.write = write;
    res.end = end;
  };
  res.write = function (this: Response, ...args: unknown[]) {
    restore();
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Response["write"];
  res.end = function (this: Response, ...args: unknown[]) {
    restore();
    return (end as (...a: unknown[]) => Response).apply(this, args);
  } as Response["end"];
  return mark;
}

function bodyField(req: Request, name: string): unknown {
  const body: unknown = req.body;
  return body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>)[name] : undefined;
}

const round = (ms: number) => Math.round(ms * 10) / 10;
