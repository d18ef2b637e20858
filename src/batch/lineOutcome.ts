// What to do with a dispatched line's answer: a pure decision.
//   - 2xx: the line succeeded (output file);
//   - an answer that says "later" (the server's queue full or timed out, the
//     batch request preempted by interactive work, the engine restarting, a
//     per-minute rate limit): retry it, it has not run to completion;
//   - anything else, a spent budget (insufficient_quota) included: the line
//     failed (error file), with the answer as its response.
import { randomId } from "../openai/common.js";
import type { DispatchResult } from "./dispatch.js";

const RETRY_CODES = new Set([
  "batch_preempted",
  "queue_timeout",
  "queue_full",
  "engine_unavailable",
  "engine_restarted",
  "model_not_loaded",
  "engine_crash_quarantine",
  "rate_limit_exceeded",
]);

export type LineOutcome =
  | { kind: "retry"; afterMs: number }
  | { kind: "done"; ok: boolean; record: string; inputTokens: number; cachedTokens: number; outputTokens: number };

const errorCode = (body: unknown): string | null => {
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === "string" ? code : null;
};

/** The tokens a response body reports: chat and completions (prompt/completion), responses (input/output), embeddings (prompt). */
export function usageOf(body: unknown): { inputTokens: number; cachedTokens: number; outputTokens: number } {
  const u = (body as { usage?: Record<string, unknown> } | null)?.usage;
  if (!u) return { inputTokens: 0, cachedTokens: 0, outputTokens: 0 };
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  const details = (u.prompt_tokens_details ?? u.input_tokens_details) as { cached_tokens?: unknown } | undefined;
  return {
    inputTokens: num(u.prompt_tokens ?? u.input_tokens),
    cachedTokens: num(details?.cached_tokens),
    outputTokens: num(u.completion_tokens ?? u.output_tokens),
  };
}

export function lineOutcome(customId: string, r: DispatchResult, attempt: number): LineOutcome {
  const ok = r.status >= 200 && r.status < 300;
  if (!ok && RETRY_CODES.has(errorCode(r.body) ?? "") && r.status !== 400) {
    // Backoff from 100 ms to 5 s unless the server said when.
    return { kind: "retry", afterMs: r.retryAfterMs ?? Math.min(5000, 100 * 2 ** Math.min(attempt, 6)) };
  }
  const record = JSON.stringify({
    id: randomId("batch_req", "_"),
    custom_id: customId,
    response: { status_code: r.status, request_id: r.requestId, body: r.body },
    error: null,
  });
  return { kind: "done", ok, record, ...(ok ? usageOf(r.body) : { inputTokens: 0, cachedTokens: 0, outputTokens: 0 }) };
}

/** A line that never ran (the batch expired first): OpenAI's error record without a response. */
export function unrunRecord(customId: string, code: string, message: string): string {
  return JSON.stringify({ id: randomId("batch_req", "_"), custom_id: customId, response: null, error: { code, message } });
}
