// `llamux bench soak`: a long run at constant concurrency with clients that
// hang up at random, checking what a long run breaks rather than what a short
// one measures: memory that grows (RSS of the front and the worker after
// warm-up), KV slots that are never given back (busy slots once the load
// stops), and requests that go missing (every request sent is completed,
// cancelled or refused, on the client's count and on the server's own).
//
// Cancelled requests ask for `cancelMaxTokens` (8 × max-tokens by default) and
// are hung up on at a random moment within the typical length of a normal
// request: anywhere from waiting for a slot to mid-stream, and never after
// they could have finished, so "cancelled" means the same on both sides.
import http from "node:http";
import { setMaxListeners } from "node:events";
import { cancellableStream, type StreamOutcome, type StreamOutcomeKind } from "./cancellableStream.js";
import { requestBody } from "./loadgen.js";
import { scrape, sumOf, type PromSample } from "./promText.js";
import { seededRandom } from "./random.js";
import { RssSampler, rssSummary, type RssSample, type RssSummary, type RssTarget } from "./rss.js";
import { median, summarize, type Summary } from "./stats.js";
import { fixed, markdown } from "./report.js";

export interface SoakOptions {
  url: string;
  model: string;
  apiKey?: string;
  endpoint: "chat" | "completions";
  durationMs: number;
  concurrency: number;
  promptTokens: number;
  maxTokens: number;
  /** Share of requests the client hangs up on (0..1). */
  cancelFraction: number;
  /** max_tokens of the requests to be cancelled: long enough that they cannot finish first. */
  cancelMaxTokens: number;
  seed: number;
  /** Processes whose RSS is sampled; frontPid null: none. */
  rss: RssTarget;
  rssEveryMs: number;
  /** The first part of the run, excluded from the memory growth (allocators and caches settle). */
  warmupFraction: number;
  /** After the load stops, how long slots may take to free before they count as leaked. */
  settleMs: number;
  timeoutMs: number;
  signal?: AbortSignal;
  onProgress?: (p: { elapsedMs: number; sent: number; counts: Record<StreamOutcomeKind, number> }) => void;
}

export const SOAK_DEFAULTS = {
  endpoint: "chat",
  concurrency: 16,
  promptTokens: 32,
  maxTokens: 64,
  cancelFraction: 0.2,
  seed: 1,
  rssEveryMs: 1000,
  warmupFraction: 0.25,
  settleMs: 10_000,
  timeoutMs: 600_000,
} as const;

/** What the server counted over the run (deltas of its /metrics counters). */
export interface ServerCounts {
  /** Generation requests (chat and completions) by HTTP status; "499": the client closed first. */
  byStatus: Record<string, number>;
  /** llamux_rejections_total by reason. */
  rejections: Record<string, number>;
}

export interface Accounting {
  sent: number;
  client: Record<StreamOutcomeKind, number>;
  server: { total: number; completed: number; cancelled: number; rejected: number; other: number };
  /** Every identity that failed, in words; empty when every request is accounted for. */
  mismatches: string[];
}

export interface SoakResult {
  durationMs: number;
  concurrency: number;
  accounting: Accounting;
  server: ServerCounts;
  /** Engine gauges after the load stopped and the settle time: all 0 when nothing leaked. */
  afterSettle: { slotsBusy: number; requestsRunning: number; requestsWaiting: number; settledInMs: number | null };
  completedTtftMs: Summary;
  completedE2eMs: Summary;
  /** Content chunks received per second, cancelled requests included (about one token each). */
  outputChunksPerSecond: number;
  rss: { front: RssSummary; worker: RssSummary; samples: RssSample[] };
  errorSamples: string[];
}

const GENERATION_ENDPOINTS = ["/v1/chat", "/v1/completions"];
const KINDS: readonly StreamOutcomeKind[] = ["completed", "cancelled", "rejected", "error"];

/** The server's generation-request and rejection counters as plain maps. */
export function serverCounts(samples: readonly PromSample[]): ServerCounts {
  const byStatus: Record<string, number> = {};
  const rejections: Record<string, number> = {};
  for (const s of samples) {
    if (s.name === "llamux_requests_total" && GENERATION_ENDPOINTS.includes(s.labels.endpoint ?? "")) {
      const k = s.labels.status ?? "?";
      byStatus[k] = (byStatus[k] ?? 0) + s.value;
    } else if (s.name === "llamux_rejections_total") {
      const k = s.labels.reason ?? "?";
      rejections[k] = (rejections[k] ?? 0) + s.value;
    }
  }
  return { byStatus, rejections };
}

/** after − before, per key. Pure. */
export function countsDelta(before: ServerCounts, after: ServerCounts): ServerCounts {
  const minus = (a: Record<string, number>, b: Record<string, number>) =>
    Object.fromEntries(
      Object.entries(a)
        .map(([k, v]) => [k, v - (b[k] ?? 0)])
        .filter(([, v]) => v !== 0),
    );
  return { byStatus: minus(after.byStatus, before.byStatus), rejections: minus(after.rejections, before.rejections) };
}

/**
 * Checks that every request is accounted for: the client's outcomes add up
 * to what it sent, the server saw exactly as many generation requests, and
 * each kind matches (completed = 200, cancelled = 499, refused = 429 + 503),
 * with no client error. Pure.
 */
export function accountFor(sent: number, client: Record<StreamOutcomeKind, number>, server: ServerCounts): Accounting {
  const count = (k: string) => server.byStatus[k] ?? 0;
  const total = Object.values(server.byStatus).reduce((a, b) => a + b, 0);
  const s = { total, completed: count("200"), cancelled: count("499"), rejected: count("429") + count("503"), other: 0 };
  s.other = total - s.completed - s.cancelled - s.rejected;
  const mismatches: string[] = [];
  const clientTotal = KINDS.reduce((n, k) => n + client[k], 0);
  if (clientTotal !== sent) mismatches.push(`client outcomes add up to ${clientTotal}, ${sent} sent`);
  if (client.error > 0) mismatches.push(`${client.error} requests failed`);
  if (total !== sent) mismatches.push(`the server counted ${total} generation requests, ${sent} sent`);
  if (s.completed !== client.completed) mismatches.push(`server completed ${s.completed}, client ${client.completed}`);
  if (s.cancelled !== client.cancelled) mismatches.push(`server saw ${s.cancelled} clients leave, client cancelled ${client.cancelled}`);
  if (s.rejected !== client.rejected) mismatches.push(`server refused ${s.rejected}, client saw ${client.rejected} refused`);
  if (s.other !== 0) mismatches.push(`server answered ${s.other} with another status`);
  return { sent, client: { ...client }, server: s, mismatches };
}

async function engineGauges(url: string, apiKey?: string): Promise<{ slotsBusy: number; requestsRunning: number; requestsWaiting: number }> {
  const m = await scrape(url, apiKey);
  return {
    slotsBusy: sumOf(m, "llamux_slots_busy"),
    requestsRunning: sumOf(m, "llamux_requests_running"),
    requestsWaiting: sumOf(m, "llamux_requests_waiting"),
  };
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const random = seededRandom(o.seed);
  const url = new URL(o.url);
  const path = o.endpoint === "chat" ? "/v1/chat/completions" : "/v1/completions";
  const agent = new http.Agent({ keepAlive: true });
  const before = serverCounts(await scrape(o.url, o.apiKey));
  const sampler = new RssSampler(o.rss, o.rssEveryMs);
  const counts: Record<StreamOutcomeKind, number> = { completed: 0, cancelled: 0, rejected: 0, error: 0 };
  const completed: StreamOutcome[] = [];
  const errors = new Set<string>();
  // Typical length of a normal request, for the moment of hanging up; recent ones only.
  const recentE2e: number[] = [];
  let sent = 0;
  let outputChunks = 0;
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  const onOuter = () => stop.abort();
  o.signal?.addEventListener("abort", onOuter, { once: true });
  const startedAt = performance.now();
  const endAt = startedAt + o.durationMs;
  const deadline = setTimeout(() => stop.abort(), o.durationMs);
  const progress = setInterval(() => o.onProgress?.({ elapsedMs: performance.now() - startedAt, sent, counts: { ...counts } }), 10_000);
  sampler.start();
  try {
    const loop = async () => {
      while (!stop.signal.aborted && performance.now() < endAt) {
        const index = sent++;
        const cancel = random() < o.cancelFraction;
        const window = recentE2e.length > 0 ? median(recentE2e) : 1000;
        const body = requestBody({ ...o, maxTokens: cancel ? o.cancelMaxTokens : o.maxTokens, ignoreEos: true }, index);
        const out = await cancellableStream({
          url,
          path,
          body: JSON.stringify(body),
          ...(o.apiKey ? { apiKey: o.apiKey } : {}),
          agent,
          cancelAfterMs: cancel ? random() * window : null,
          timeoutMs: o.timeoutMs,
        });
        counts[out.kind]++;
        outputChunks += out.contentChunks;
        if (out.kind === "completed") {
          completed.push(out);
          recentE2e.push(out.e2eMs);
          if (recentE2e.length > 64) recentE2e.shift();
        } else if (out.kind === "error" && errors.size < 3) errors.add(out.error ?? "error");
      }
    };
    await Promise.all(Array.from({ length: o.concurrency }, loop));
  } finally {
    clearTimeout(deadline);
    clearInterval(progress);
    o.signal?.removeEventListener("abort", onOuter);
    agent.destroy();
  }
  const loadEndedAt = performance.now();
  await sampler.stop();

  // The load has stopped: every slot must come free, and nothing may be left running or waiting.
  let gauges = await engineGauges(o.url, o.apiKey);
  let settledInMs: number | null = null;
  while (true) {
    if (gauges.slotsBusy === 0 && gauges.requestsRunning === 0 && gauges.requestsWaiting === 0) {
      settledInMs = performance.now() - loadEndedAt;
      break;
    }
    if (performance.now() - loadEndedAt > o.settleMs) break;
    await new Promise((r) => setTimeout(r, 200));
    gauges = await engineGauges(o.url, o.apiKey);
  }
  const server = countsDelta(before, serverCounts(await scrape(o.url, o.apiKey)));
  const warmEnd = startedAt + o.durationMs * o.warmupFraction;
  const wallSeconds = (loadEndedAt - startedAt) / 1000;
  return {
    durationMs: loadEndedAt - startedAt,
    concurrency: o.concurrency,
    accounting: accountFor(sent, counts, server),
    server,
    afterSettle: { ...gauges, settledInMs },
    completedTtftMs: summarize(completed.map((c) => c.ttftMs).filter(Number.isFinite)),
    completedE2eMs: summarize(completed.map((c) => c.e2eMs)),
    outputChunksPerSecond: wallSeconds > 0 ? outputChunks / wallSeconds : 0,
    rss: {
      front: rssSummary(sampler.samples, (s) => s.frontBytes, warmEnd, loadEndedAt),
      worker: rssSummary(sampler.samples, (s) => s.workerBytes, warmEnd, loadEndedAt),
      samples: sampler.samples,
    },
    errorSamples: [...errors],
  };
}

/** Whether the run passed: everything accounted for and no slot leaked. */
export function soakPassed(r: SoakResult): boolean {
  return r.accounting.mismatches.length === 0 && r.afterSettle.slotsBusy === 0 && r.afterSettle.requestsRunning === 0 && r.afterSettle.requestsWaiting === 0;
}

const mib = (b: number | null) => (b === null ? "-" : (b / 1024 / 1024).toFixed(0));
const pct = (g: number | null) => (g === null ? "-" : `${(g * 100).toFixed(1)}%`);

/** The soak as one markdown table row (plus its header). */
export function soakTable(r: SoakResult): string {
  const a = r.accounting;
  return markdown(
    [
      "minutes",
      "streams",
      "sent",
      "completed",
      "cancelled",
      "refused",
      "errors",
      "server 200 / 499 / 429+503",
      "accounted",
      "slots busy after",
      "TTFT p50 ms",
      "TTFT p99 ms",
      "front RSS MiB (growth)",
      "worker RSS MiB (growth)",
    ],
    [
      [
        fixed(r.durationMs / 60_000, 1),
        String(r.concurrency),
        String(a.sent),
        String(a.client.completed),
        String(a.client.cancelled),
        String(a.client.rejected),
        String(a.client.error),
        `${a.server.completed} / ${a.server.cancelled} / ${a.server.rejected}`,
        a.mismatches.length === 0 ? "yes" : `NO: ${a.mismatches.join("; ")}`,
        String(r.afterSettle.slotsBusy),
        fixed(r.completedTtftMs.p50),
        fixed(r.completedTtftMs.p99),
        `${mib(r.rss.front.baselineBytes)} → ${mib(r.rss.front.endBytes)} (${pct(r.rss.front.growth)})`,
        `${mib(r.rss.worker.baselineBytes)} → ${mib(r.rss.worker.endBytes)} (${pct(r.rss.worker.growth)})`,
      ],
    ],
  );
}
