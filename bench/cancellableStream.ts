// One streaming request that the client may hang up on at a chosen moment, on
// node:http rather than fetch so that moment can be counted from when the
// request was fully written: every request the client sends, cancelled or
// not, then certainly reaches the server, and the server's counters can be
// checked against the client's one for one.
import http from "node:http";
import { createParser } from "eventsource-parser";
import { errorCodeOf } from "./loadgen.js";

export type StreamOutcomeKind = "completed" | "cancelled" | "rejected" | "error";

export interface StreamOutcome {
  kind: StreamOutcomeKind;
  /** HTTP status, when a response arrived. */
  status: number | null;
  /** error.code of a refused request. */
  errorCode?: string;
  error?: string;
  /** From the start to the first content chunk; NaN without one. */
  ttftMs: number;
  e2eMs: number;
  /** Content chunks received. */
  contentChunks: number;
}

export interface StreamRequest {
  url: URL;
  path: string;
  body: string;
  apiKey?: string;
  agent: http.Agent;
  /** Hang up this long after the request was written; null: never. */
  cancelAfterMs: number | null;
  timeoutMs: number;
}

/** Rejections: the server refused or shed the request (429, 503), as opposed to failing it. */
const REFUSED = new Set([429, 503]);

/** Never rejects: every way it can end is an outcome. */
export function cancellableStream(r: StreamRequest): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const startedAt = performance.now();
    let status: number | null = null;
    let firstAt = NaN;
    let chunks = 0;
    let sawDone = false;
    let sseError: string | null = null;
    let done = false;
    let cancelTimer: NodeJS.Timeout | undefined;
    const end = (kind: StreamOutcomeKind, extra: { error?: string; errorCode?: string } = {}) => {
      if (done) return;
      done = true;
      clearTimeout(cancelTimer);
      clearTimeout(timeoutTimer);
      resolve({ kind, status, ...extra, ttftMs: firstAt - startedAt, e2eMs: performance.now() - startedAt, contentChunks: chunks });
    };
    const req = http.request({
      host: r.url.hostname,
      port: r.url.port,
      path: r.path,
      method: "POST",
      agent: r.agent,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(r.body),
        ...(r.apiKey ? { authorization: `Bearer ${r.apiKey}` } : {}),
      },
    });
    const timeoutTimer = setTimeout(() => {
      end("error", { error: `timed out after ${r.timeoutMs} ms` });
      req.destroy();
    }, r.timeoutMs);
    req.once("finish", () => {
      if (r.cancelAfterMs === null || done) return;
      cancelTimer = setTimeout(() => {
        end("cancelled");
        req.destroy();
      }, r.cancelAfterMs);
    });
    req.once("error", (err) => end("error", { error: err.message }));
    req.once("response", (res) => {
      status = res.statusCode ?? null;
      res.setEncoding("utf8");
      if (status !== 200) {
        let text = "";
        res.on("data", (d: string) => (text += d));
        res.once("end", () => {
          const errorCode = errorCodeOf(text);
          const error = `HTTP ${status}: ${text.replace(/\s+/g, " ").slice(0, 200)}`;
          end(status !== null && REFUSED.has(status) ? "rejected" : "error", { error, ...(errorCode ? { errorCode } : {}) });
        });
        res.once("error", (err) => end("error", { error: err.message }));
        return;
      }
      const parser = createParser({
        onEvent: (e) => {
          if (e.data === "[DONE]") {
            sawDone = true;
            return;
          }
          // The server's error frame after the headers: {"error": {...}}.
          if (e.data.startsWith('{"error"')) sseError ??= `SSE error: ${e.data.slice(0, 200)}`;
          if (/"(content|text)":"[^"]/.test(e.data)) {
            if (chunks === 0) firstAt = performance.now();
            chunks++;
          }
        },
      });
      res.on("data", (d: string) => parser.feed(d));
      res.once("end", () => (sawDone && !sseError ? end("completed") : end("error", { error: sseError ?? "the stream ended without [DONE]" })));
      res.once("error", (err) => end("error", { error: err.message }));
      res.once("aborted", () => end("error", { error: "the server cut the stream" }));
    });
    req.end(r.body);
  });
}
