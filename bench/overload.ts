// `llamux bench overload`: what a server does with more work than it can do.
// First the sustainable rate is measured closed-loop (as many streams as the
// server has slots, each sending its next request when the last ends), then
// `factor` times that rate arrives open-loop (Poisson arrivals that do not
// wait for the server) for a while. A bounded server refuses the excess fast
// and keeps the latency of what it admits bounded; an unbounded one queues
// everything, and every request's wait grows with the length of the run.
import { runLoad, runOne, type LevelResult, type LoadOptions, type RequestSample } from "./loadgen.js";
import { markdown, fixed } from "./report.js";
import { scrape, sumOf } from "./promText.js";
import { poissonGapMs, seededRandom } from "./random.js";
import { RssSampler, type RssSample, type RssTarget } from "./rss.js";
import { countsDelta, serverCounts, type ServerCounts } from "./soak.js";
import { summarize, type Summary } from "./stats.js";

export interface OverloadOptions {
  url: string;
  model: string;
  apiKey?: string;
  endpoint: "chat" | "completions";
  promptTokens: number;
  maxTokens: number;
  /** Closed-loop streams for the capacity measurement; null: the server's slot count (from /metrics). */
  capacityConcurrency: number | null;
  /** Arrivals per second to offer; null: factor × the measured capacity. */
  rate: number | null;
  factor: number;
  durationMs: number;
  seed: number;
  rss: RssTarget;
  rssEveryMs: number;
  timeoutMs: number;
  log?: (msg: string) => void;
}

export const OVERLOAD_DEFAULTS = {
  endpoint: "chat",
  promptTokens: 32,
  maxTokens: 64,
  capacityConcurrency: null,
  rate: null,
  factor: 4,
  durationMs: 60_000,
  seed: 1,
  rssEveryMs: 1000,
  timeoutMs: 600_000,
} as const;

export interface RssRange {
  startBytes: number | null;
  peakBytes: number | null;
  endBytes: number | null;
}

export interface OverloadResult {
  /** The closed-loop measurement; null when --rate was given. */
  capacity:
    | (Pick<LevelResult, "concurrency" | "requests" | "completed" | "errors" | "wallSeconds" | "ttftMs" | "e2eMs"> & { requestsPerSecond: number })
    | null;
  offeredPerSecond: number;
  durationMs: number;
  sent: number;
  /** Completed with 200. */
  admitted: number;
  /** Refused (429) or shed (503), by error code. */
  refused: Record<string, number>;
  /** Anything else: a failure, not back-pressure. */
  errors: number;
  errorSamples: string[];
  admittedTtftMs: Summary;
  admittedE2eMs: Summary;
  /** Output tokens of admitted requests per second of the open-loop phase (until the last one ended). */
  goodputTokensPerSecond: number;
  /** The server's own counters over the open-loop phase. */
  server: ServerCounts;
  rss: { front: RssRange; worker: RssRange; samples: RssSample[] };
}

const OPEN_LOOP_INDEX = 1_000_000;

/** Counts samples as admitted, refused (429/503 by code) or failed. Pure. */
export function classify(samples: readonly RequestSample[]): Pick<OverloadResult, "admitted" | "refused" | "errors" | "errorSamples"> {
  const refused: Record<string, number> = {};
  let admitted = 0;
  let errors = 0;
  const errorSamples = new Set<string>();
  for (const s of samples) {
    if (s.ok) admitted++;
    else if (s.status === 429 || s.status === 503) {
      const code = s.errorCode ?? `http_${s.status}`;
      refused[code] = (refused[code] ?? 0) + 1;
    } else {
      errors++;
      if (errorSamples.size < 3) errorSamples.add(s.error ?? "error");
    }
  }
  return { admitted, refused, errors, errorSamples: [...errorSamples] };
}

function rssRange(samples: readonly RssSample[], pick: (s: RssSample) => number | null): RssRange {
  const v = samples.map(pick).filter((x): x is number => x !== null);
  return { startBytes: v[0] ?? null, peakBytes: v.length > 0 ? Math.max(...v) : null, endBytes: v.at(-1) ?? null };
}

export async function runOverload(o: OverloadOptions): Promise<OverloadResult> {
  const load: Omit<LoadOptions, "concurrency" | "requests"> = {
    url: o.url,
    model: o.model,
    ...(o.apiKey ? { apiKey: o.apiKey } : {}),
    endpoint: o.endpoint,
    promptTokens: o.promptTokens,
    maxTokens: o.maxTokens,
    ignoreEos: true,
    timeoutMs: o.timeoutMs,
  };
  const sampler = new RssSampler(o.rss, o.rssEveryMs);
  sampler.start();
  try {
    let capacity: OverloadResult["capacity"] = null;
    let rate = o.rate;
    if (rate === null) {
      const slots = o.capacityConcurrency ?? slotCount(await scrape(o.url, o.apiKey));
      await runLoad({ ...load, concurrency: 1, requests: 1 }); // one-off first-request costs
      const r = await runLoad({ ...load, concurrency: slots, requests: 4 * slots });
      if (r.completed === 0) throw new Error(`the capacity phase completed no request: ${r.errorSamples.join(" | ")}`);
      capacity = {
        concurrency: r.concurrency,
        requests: r.requests,
        completed: r.completed,
        errors: r.errors,
        wallSeconds: r.wallSeconds,
        ttftMs: r.ttftMs,
        e2eMs: r.e2eMs,
        requestsPerSecond: r.completed / r.wallSeconds,
      };
      rate = o.factor * capacity.requestsPerSecond;
      o.log?.(
        `capacity: ${slots} streams, ${r.completed}/${r.requests} in ${r.wallSeconds.toFixed(1)} s = ${capacity.requestsPerSecond.toFixed(2)} req/s; offering ${rate.toFixed(2)} req/s for ${o.durationMs / 1000} s`,
      );
    }

    const before = serverCounts(await scrape(o.url, o.apiKey));
    const random = seededRandom(o.seed);
    const pending: Array<Promise<RequestSample>> = [];
    const startedAt = performance.now();
    let nextAt = startedAt;
    while (true) {
      nextAt += poissonGapMs(random, rate);
      if (nextAt - startedAt >= o.durationMs) break;
      const waitMs = nextAt - performance.now();
      if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
      pending.push(runOne({ ...load, concurrency: 1, requests: 1 }, OPEN_LOOP_INDEX + pending.length));
    }
    const samples = await Promise.all(pending);
    const wallSeconds = (performance.now() - startedAt) / 1000;
    const server = countsDelta(before, serverCounts(await scrape(o.url, o.apiKey)));
    await sampler.stop();
    const ok = samples.filter((s) => s.ok);
    return {
      capacity,
      offeredPerSecond: rate,
      durationMs: o.durationMs,
      sent: samples.length,
      ...classify(samples),
      admittedTtftMs: summarize(ok.map((s) => s.ttftMs)),
      admittedE2eMs: summarize(ok.map((s) => s.e2eMs)),
      goodputTokensPerSecond: ok.reduce((n, s) => n + s.outputTokens, 0) / wallSeconds,
      server,
      rss: { front: rssRange(sampler.samples, (s) => s.frontBytes), worker: rssRange(sampler.samples, (s) => s.workerBytes), samples: sampler.samples },
    };
  } finally {
    await sampler.stop();
  }
}

/** The server's KV slots, busy + idle, from its /metrics. */
function slotCount(m: Parameters<typeof sumOf>[0]): number {
  const n = sumOf(m, "llamux_slots_busy") + sumOf(m, "llamux_slots_idle");
  if (!(n > 0)) throw new Error("cannot read the slot count from /metrics (llamux_slots_busy/idle); give --concurrency");
  return n;
}

const mib = (b: number | null) => (b === null ? "-" : fixed(b / 1024 / 1024));

/** One row per run (e.g. bounded and unbounded queue, same offered load). */
export function overloadTable(runs: ReadonlyArray<{ name: string; result: OverloadResult }>): string {
  const head = [
    "server",
    "capacity req/s",
    "offered req/s",
    "sent",
    "admitted",
    "queue_full",
    "queue_timeout",
    "errors",
    "admitted TTFT p50 ms",
    "admitted TTFT p99 ms",
    "admitted E2E p99 ms",
    "goodput tok/s",
    "front RSS end MiB",
    "worker RSS peak MiB",
  ];
  return markdown(
    head,
    runs.map(({ name, result: r }) => [
      name,
      r.capacity ? fixed(r.capacity.requestsPerSecond, 2) : "-",
      fixed(r.offeredPerSecond, 2),
      String(r.sent),
      String(r.admitted),
      String(r.refused.queue_full ?? 0),
      String(r.refused.queue_timeout ?? 0),
      String(r.errors),
      fixed(r.admittedTtftMs.p50),
      fixed(r.admittedTtftMs.p99),
      fixed(r.admittedE2eMs.p99),
      fixed(r.goodputTokensPerSecond, 1),
      mib(r.rss.front.endBytes),
      mib(r.rss.worker.peakBytes),
    ]),
  );
}
