// A streaming load generator for any OpenAI-compatible server (llamux,
// llama.cpp's llama-server, vLLM...). It keeps `concurrency` streaming
// requests in flight until `requests` have been sent and times every SSE
// content chunk, so TTFT and inter-token latency are what a client sees.
import { createParser } from "eventsource-parser";
import { median, summarize, type Summary } from "./stats.js";

export interface LoadOptions {
  /** Server root, e.g. http://127.0.0.1:8080 (a trailing slash is fine). */
  url: string;
  model: string;
  concurrency: number;
  requests: number;
  promptTokens: number;
  maxTokens: number;
  apiKey?: string;
  endpoint: "chat" | "completions";
  /** Send `ignore_eos: true` so every request generates exactly maxTokens. */
  ignoreEos: boolean;
  /** Per request, from send to the end of the stream. */
  timeoutMs: number;
  /** Aborts requests in flight and stops sending new ones. */
  signal?: AbortSignal;
  /** The prompt index (promptFor) of the first request; the rest follow it. Default 0. */
  firstIndex?: number;
}

export interface RequestSample {
  ok: boolean;
  error?: string;
  /** Failed because the caller's signal aborted it (a deadline, Ctrl-C), not because of the server. */
  aborted?: boolean;
  /** The HTTP status of a refused request (not 2xx). */
  status?: number;
  /** error.code of a refused request's OpenAI-style body, when it had one. */
  errorCode?: string;
  /** From just before fetch to the first non-empty content delta (also for a failed request that got one; else NaN). */
  ttftMs: number;
  /** From just before fetch to the end of the stream. */
  e2eMs: number;
  /** Gaps between consecutive content chunks. */
  itlMs: number[];
  /** usage.completion_tokens when the server sent it, else content chunks (for a failed request: chunks received). */
  outputTokens: number;
  promptTokens: number | null;
}

export interface LevelResult {
  concurrency: number;
  /** Requests sent (fewer than asked only when aborted). */
  requests: number;
  completed: number;
  errors: number;
  /** The first few distinct error messages. */
  errorSamples: string[];
  /** From the first send to the last completion. */
  wallSeconds: number;
  /** Over completed requests only. */
  outputTokens: number;
  outputTokensPerSecond: number;
  ttftMs: Summary;
  itlMs: Summary;
  tpotMs: Summary;
  e2eMs: Summary;
  /** Median of the servers' usage.prompt_tokens: the real prompt size; null when no server reported it. */
  promptTokensMedian: number | null;
}

const ERROR_SAMPLES = 3;

// Words that are one token each (with their leading space) in Llama-family
// vocabularies, so a prompt of N-1 words plus BOS is N tokens on the
// completions endpoint, the shape `bench ceiling` uses. Chat adds the
// template's tokens on top; the server's usage.prompt_tokens shows the truth.
const WORDS = (
  "time story river light garden music winter friend window paper stone cloud house water green table bird tree " +
  "night day sun moon king road city dog cat book door ship rain snow fire wind sea hill field horse girl boy " +
  "child voice word song dream heart mind world family school money power war street room glass letter train " +
  "plane market bread milk summer morning evening year week hour color"
).split(" ");

/**
 * A deterministic prompt of about `tokens` tokens (BOS included), different for
 * every request index from its first word on, so a server's prefix cache cannot
 * serve one request from another.
 */
export function promptFor(index: number, tokens: number): string {
  let x = ((index + 1) * 2654435761) >>> 0;
  const words: string[] = [WORDS[index % WORDS.length]!];
  while (words.length < tokens - 1) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    words.push(WORDS[x % WORDS.length]!);
  }
  return words.join(" ");
}

export function requestBody(
  opts: Pick<LoadOptions, "model" | "maxTokens" | "promptTokens" | "endpoint" | "ignoreEos">,
  index: number,
): Record<string, unknown> {
  const prompt = promptFor(index, opts.promptTokens);
  return {
    model: opts.model,
    max_tokens: opts.maxTokens,
    stream: true,
    stream_options: { include_usage: true },
    // No temperature: the server's default sampling is part of what is measured.
    ...(opts.ignoreEos ? { ignore_eos: true } : {}),
    ...(opts.endpoint === "chat" ? { messages: [{ role: "user", content: prompt }] } : { prompt }),
  };
}

interface StreamChunk {
  error?: { message?: string } | string;
  choices?: Array<{ delta?: { content?: string | null }; text?: string | null }>;
  usage?: { completion_tokens?: number; prompt_tokens?: number } | null;
}

/** One streaming request, never throwing: failures come back as `ok: false`. */
export async function runOne(opts: LoadOptions, index: number): Promise<RequestSample> {
  const path = opts.endpoint === "chat" ? "/v1/chat/completions" : "/v1/completions";
  const body = JSON.stringify(requestBody(opts, index));
  // Our own controller and timer rather than AbortSignal.timeout, so the timer
  // is cleared the moment the request ends instead of lingering.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
  const onOuterAbort = () => abort.abort(new Error("aborted"));
  if (opts.signal?.aborted) onOuterAbort();
  opts.signal?.addEventListener("abort", onOuterAbort, { once: true });

  const chunkTimes: number[] = [];
  let usageCompletion: number | null = null;
  let usagePrompt: number | null = null;
  let sseError: string | null = null;
  const started = performance.now();
  const fail = (error: string, refused?: { status: number; errorCode: string | undefined }): RequestSample => ({
    ok: false,
    error,
    ...(opts.signal?.aborted ? { aborted: true } : {}),
    ...(refused ? { status: refused.status, ...(refused.errorCode ? { errorCode: refused.errorCode } : {}) } : {}),
    ttftMs: chunkTimes.length > 0 ? chunkTimes[0]! - started : NaN,
    e2eMs: performance.now() - started,
    itlMs: [],
    outputTokens: chunkTimes.length,
    promptTokens: null,
  });
  try {
    const res = await fetch(`${opts.url.replace(/\/+$/, "")}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}) },
      body,
      signal: abort.signal,
    });
    if (!res.ok || !res.body) {
      const text = await res.text();
      return fail(`HTTP ${res.status}: ${text.replace(/\s+/g, " ").slice(0, 200)}`, { status: res.status, errorCode: errorCodeOf(text) });
    }
    const parser = createParser({
      onEvent: (event) => {
        // Timestamp first: parsing JSON is client time, not server time.
        const now = performance.now();
        if (event.data === "[DONE]") return;
        if (event.event === "error") {
          sseError ??= `SSE error: ${event.data.slice(0, 200)}`;
          return;
        }
        let chunk: StreamChunk;
        try {
          chunk = JSON.parse(event.data) as StreamChunk;
        } catch {
          sseError ??= `bad SSE data: ${event.data.slice(0, 100)}`;
          return;
        }
        if (chunk.error) {
          sseError ??= `SSE error: ${typeof chunk.error === "string" ? chunk.error : (chunk.error.message ?? "error frame")}`;
        }
        const choice = chunk.choices?.[0];
        const text = choice?.delta?.content ?? choice?.text ?? "";
        if (text) chunkTimes.push(now);
        if (chunk.usage) {
          usageCompletion = chunk.usage.completion_tokens ?? null;
          usagePrompt = chunk.usage.prompt_tokens ?? null;
        }
      },
    });
    const decoder = new TextDecoder();
    for await (const bytes of res.body) parser.feed(decoder.decode(bytes as Uint8Array, { stream: true }));
    parser.feed(decoder.decode());
    parser.reset({ consume: true }); // dispatch a last event that lacked its blank line
  } catch (err) {
    return fail(abort.signal.aborted ? String((abort.signal.reason as Error | undefined)?.message ?? "aborted") : errorMessage(err));
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onOuterAbort);
  }
  const ended = performance.now();
  if (sseError) return fail(sseError);
  if (chunkTimes.length === 0) return fail("no content in the stream");
  return {
    ok: true,
    ttftMs: chunkTimes[0]! - started,
    e2eMs: ended - started,
    itlMs: gaps(chunkTimes),
    outputTokens: usageCompletion ?? chunkTimes.length,
    promptTokens: usagePrompt,
  };
}

/** error.code of an OpenAI-style error body; undefined when it has none. */
export function errorCodeOf(body: string): string | undefined {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" ? code : undefined;
  } catch {
    return undefined;
  }
}

/** undici hides the useful part ("ECONNREFUSED") in err.cause. */
function errorMessage(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message ?? "error"} (${cause})` : (e.message ?? String(err));
}

/** Differences between consecutive timestamps. */
export function gaps(times: readonly number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]!);
}

/** One level: a pool of `concurrency` workers, each sending its next request as soon as its last one ends. */
export async function runLoad(opts: LoadOptions): Promise<LevelResult> {
  const samples: RequestSample[] = [];
  const first = opts.firstIndex ?? 0;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < opts.requests && !opts.signal?.aborted) samples.push(await runOne(opts, first + next++));
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.requests) }, worker));
  return summarizeLevel(opts, samples, (performance.now() - started) / 1000);
}

/** The first few distinct error messages of failed requests. */
export function errorSamplesOf(failed: readonly RequestSample[]): string[] {
  return [...new Set(failed.map((s) => s.error ?? "error"))].slice(0, ERROR_SAMPLES);
}

/** Median of the servers' usage.prompt_tokens; null when no server reported it. */
export function promptTokensMedianOf(ok: readonly RequestSample[]): number | null {
  const prompts = ok.map((s) => s.promptTokens).filter((n): n is number => n !== null);
  return prompts.length > 0 ? median(prompts) : null;
}

export function summarizeLevel(opts: Pick<LoadOptions, "concurrency">, samples: RequestSample[], wallSeconds: number): LevelResult {
  const ok = samples.filter((s) => s.ok);
  const failed = samples.filter((s) => !s.ok);
  const outputTokens = ok.reduce((n, s) => n + s.outputTokens, 0);
  // TPOT excludes the first token, which TTFT already covers.
  const tpot = ok.filter((s) => s.outputTokens > 1).map((s) => (s.e2eMs - s.ttftMs) / (s.outputTokens - 1));
  return {
    concurrency: opts.concurrency,
    requests: samples.length,
    completed: ok.length,
    errors: failed.length,
    errorSamples: errorSamplesOf(failed),
    wallSeconds,
    outputTokens,
    outputTokensPerSecond: wallSeconds > 0 ? outputTokens / wallSeconds : 0,
    ttftMs: summarize(ok.map((s) => s.ttftMs)),
    itlMs: summarize(ok.flatMap((s) => s.itlMs)),
    tpotMs: summarize(tpot),
    e2eMs: summarize(ok.map((s) => s.e2eMs)),
    promptTokensMedian: promptTokensMedianOf(ok),
  };
}
