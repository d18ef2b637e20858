// `llamux bench multiturn`: many tenants' conversations at once, each a chat
// that resends its growing history every turn after a shared system prompt,
// with more live conversations than the server has slots. What it measures is
// how much of each turn's prompt the server recomputes, and what that costs in
// time to first token. Works against any OpenAI-compatible server; for
// llama-server the prefill count comes from its `timings`.
import { createParser } from "eventsource-parser";
import { promptFor } from "./loadgen.js";
import { summarize, type Summary } from "./stats.js";

export interface MultiturnOptions {
  url: string;
  model: string;
  tenants: number;
  conversationsPerTenant: number;
  turns: number;
  /** Tokens of the system prompt every conversation of every tenant starts with. */
  systemTokens: number;
  /** Tokens of each user message. */
  userTokens: number;
  /** Tokens generated per turn (ignore_eos, so exactly this many). */
  maxTokens: number;
  /**
   * A user's pause between reading a reply and sending the next turn. Each
   * conversation also starts after a share of it, so turns do not arrive in
   * lockstep bursts.
   */
  thinkMs: number;
  /** One API key per tenant, in order; empty: no key is sent. */
  tenantKeys: string[];
  timeoutMs: number;
}

export interface TurnSample {
  tenant: number;
  conversation: number;
  turn: number;
  ok: boolean;
  error?: string;
  ttftMs: number;
  promptTokens: number;
  /** Prompt tokens the server evaluated (not served from a cache). */
  prefillTokens: number;
}

export interface TurnSummary {
  turn: number;
  requests: number;
  errors: number;
  ttftMs: Summary;
  promptTokensMean: number;
  prefillTokensMean: number;
  prefillTokensTotal: number;
}

export interface MultiturnResult {
  perTurn: TurnSummary[];
  /** Turns 3 and later together: the steady state the target is about. */
  fromTurn3: { ttftMs: Summary; prefillTokensTotal: number; requests: number };
  wallSeconds: number;
}

type Message = { role: "system" | "user" | "assistant"; content: string };

interface FinalChunk {
  choices?: Array<{ delta?: { content?: string | null } }>;
  usage?: { prompt_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } } | null;
  /** llama-server's own accounting: prompt_n is what it evaluated. */
  timings?: { prompt_n?: number };
  error?: unknown;
}

/** One streamed turn; never throws. */
async function turn(
  o: MultiturnOptions,
  apiKey: string | undefined,
  messages: Message[],
): Promise<{ text: string; sample: Omit<TurnSample, "tenant" | "conversation" | "turn"> }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), o.timeoutMs);
  const started = performance.now();
  let ttftMs = NaN;
  let text = "";
  let promptTokens = NaN;
  let cached: number | null = null;
  let evaluated: number | null = null;
  let error: string | undefined;
  try {
    const res = await fetch(`${o.url.replace(/\/+$/, "")}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
      body: JSON.stringify({
        model: o.model,
        messages,
        max_tokens: o.maxTokens,
        temperature: 0,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
      signal: abort.signal,
    });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
    const parser = createParser({
      onEvent: (event) => {
        const now = performance.now();
        if (event.data === "[DONE]") return;
        const chunk = JSON.parse(event.data) as FinalChunk;
        if (chunk.error) error ??= `SSE error: ${JSON.stringify(chunk.error).slice(0, 200)}`;
        const delta = chunk.choices?.[0]?.delta?.content ?? "";
        if (delta && Number.isNaN(ttftMs)) ttftMs = now - started;
        text += delta;
        if (chunk.usage) {
          promptTokens = chunk.usage.prompt_tokens ?? NaN;
          cached = chunk.usage.prompt_tokens_details?.cached_tokens ?? cached;
        }
        if (chunk.timings?.prompt_n !== undefined) evaluated = chunk.timings.prompt_n;
      },
    });
    const decoder = new TextDecoder();
    for await (const bytes of res.body) parser.feed(decoder.decode(bytes as Uint8Array, { stream: true }));
  } catch (err) {
    error ??= abort.signal.aborted ? `timed out after ${o.timeoutMs} ms` : (err as Error).message;
  } finally {
    clearTimeout(timer);
  }
  const prefillTokens = evaluated ?? (cached === null ? promptTokens : promptTokens - cached);
  if (!error && (Number.isNaN(ttftMs) || Number.isNaN(prefillTokens))) error = "no content or no usage in the stream";
  return { text, sample: { ok: !error, ...(error ? { error } : {}), ttftMs, promptTokens, prefillTokens } };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Every conversation at once, each one turn after another. */
export async function runMultiturn(o: MultiturnOptions, onTurn?: (s: TurnSample) => void): Promise<{ samples: TurnSample[]; wallSeconds: number }> {
  const system = promptFor(1_000_003, o.systemTokens);
  const samples: TurnSample[] = [];
  const started = performance.now();
  const total = o.tenants * o.conversationsPerTenant;
  const conversation = async (tenant: number, conv: number) => {
    const history: Message[] = [{ role: "system", content: system }];
    await sleep((o.thinkMs * (tenant * o.conversationsPerTenant + conv)) / total);
    for (let k = 1; k <= o.turns; k++) {
      if (k > 1) await sleep(o.thinkMs);
      history.push({ role: "user", content: promptFor((tenant * 1000 + conv) * 100 + k, o.userTokens) });
      const { text, sample } = await turn(o, o.tenantKeys[tenant], history);
      const s = { tenant, conversation: conv, turn: k, ...sample };
      samples.push(s);
      onTurn?.(s);
      if (!s.ok) return; // a broken conversation cannot go on
      history.push({ role: "assistant", content: text });
    }
  };
  const all: Array<Promise<void>> = [];
  for (let t = 0; t < o.tenants; t++) for (let c = 0; c < o.conversationsPerTenant; c++) all.push(conversation(t, c));
  await Promise.all(all);
  return { samples, wallSeconds: (performance.now() - started) / 1000 };
}

export function summarizeMultiturn(samples: readonly TurnSample[], wallSeconds: number): MultiturnResult {
  const turns = [...new Set(samples.map((s) => s.turn))].sort((a, b) => a - b);
  const ok = samples.filter((s) => s.ok);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const late = ok.filter((s) => s.turn >= 3);
  return {
    perTurn: turns.map((turn) => {
      const all = samples.filter((s) => s.turn === turn);
      const good = all.filter((s) => s.ok);
      return {
        turn,
        requests: all.length,
        errors: all.length - good.length,
        ttftMs: summarize(good.map((s) => s.ttftMs)),
        promptTokensMean: mean(good.map((s) => s.promptTokens)),
        prefillTokensMean: mean(good.map((s) => s.prefillTokens)),
        prefillTokensTotal: good.reduce((n, s) => n + s.prefillTokens, 0),
      };
    }),
    fromTurn3: { ttftMs: summarize(late.map((s) => s.ttftMs)), prefillTokensTotal: late.reduce((n, s) => n + s.prefillTokens, 0), requests: late.length },
    wallSeconds,
  };
}

export function multiturnTable(r: MultiturnResult): string {
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");
  const lines = [
    "| turn | requests | errors | TTFT mean ms | TTFT p99 ms | prompt tokens (mean) | prefilled tokens (mean) | prefilled tokens (total) |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...r.perTurn.map(
      (t) =>
        `| ${t.turn} | ${t.requests} | ${t.errors} | ${f(t.ttftMs.mean)} | ${f(t.ttftMs.p99)} | ${f(t.promptTokensMean)} | ${f(t.prefillTokensMean)} | ${t.prefillTokensTotal} |`,
    ),
    `| 3+ | ${r.fromTurn3.requests} | | ${f(r.fromTurn3.ttftMs.mean)} | ${f(r.fromTurn3.ttftMs.p99)} | | | ${r.fromTurn3.prefillTokensTotal} |`,
  ];
  return lines.join("\n");
}
