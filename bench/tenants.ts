// The multi-tenant workload: several tenants, each a closed loop keeping its
// own number of streaming requests in flight with its own API key, prompt
// length and max tokens, all at once against one OpenAI-compatible server.
// It measures what fair scheduling promises: a light tenant's latency and each
// tenant's share of the throughput while a heavy tenant floods the server.
// A server that ignores keys (llama-server) simply serves everyone as one.
import { setMaxListeners } from "node:events";
import { errorSamplesOf, promptTokensMedianOf, runOne, type LoadOptions, type RequestSample } from "./loadgen.js";
import { summarize, type Summary } from "./stats.js";
import { UsageError } from "./usage.js";

export interface TenantSpec {
  name: string;
  /** Requests kept in flight (closed loop). */
  inFlight: number;
  /** Never written to reports. */
  apiKey?: string;
  promptTokens: number;
  maxTokens: number;
}

export interface TenantWorkload {
  url: string;
  model: string;
  endpoint: "chat" | "completions";
  ignoreEos: boolean;
  timeoutMs: number;
  tenants: TenantSpec[];
  /**
   * Duration mode: tenants send until this many seconds have passed; requests
   * still streaming then are cut (their tokens so far count, they are not errors).
   */
  durationS: number | null;
  /** Count mode (durationS null): each tenant sends this many requests. */
  requestsPerTenant: number | null;
  signal?: AbortSignal;
}

export interface TenantResult {
  tenant: string;
  inFlight: number;
  promptTokens: number;
  maxTokens: number;
  requests: number;
  completed: number;
  /** Failed for a reason other than the deadline. */
  errors: number;
  /** Still streaming at the deadline. */
  cut: number;
  errorSamples: string[];
  /** Duration mode: the duration; count mode: from the start to the tenant's last completion. */
  wallSeconds: number;
  /** Completed requests' tokens, plus the tokens cut requests had received. */
  outputTokens: number;
  outputTokensPerSecond: number;
  /** Over every request that got a first token, cut ones included. */
  ttftMs: Summary;
  itlMs: Summary;
  e2eMs: Summary;
  promptTokensMedian: number | null;
}

export interface PhaseResult {
  /** "mixed" (every tenant at once) or "solo NAME". */
  phase: string;
  tenants: TenantResult[];
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/**
 * Request indices per tenant and phase, so that no two requests of a run share
 * a prompt (a solo phase would otherwise hit the prefix cache the mixed phase
 * left). promptFor stays exact below ~3e6, i.e. about 30 tenant-phases.
 */
const INDEX_STRIDE = 100_000;

/** "a:16,b:1" → tenants and their in-flight counts, in the order given. */
export function parseTenantList(raw: string): Array<{ name: string; inFlight: number }> {
  const out: Array<{ name: string; inFlight: number }> = [];
  for (const part of raw.split(",").map((s) => s.trim())) {
    const m = /^([^:]+):(\d+)$/.exec(part);
    const inFlight = m ? Number(m[2]) : NaN;
    if (!m || !NAME.test(m[1]!) || !Number.isSafeInteger(inFlight) || inFlight <= 0) {
      throw new UsageError(`--tenants must be a comma-separated list of NAME:IN_FLIGHT (e.g. a:16,b:1), got '${raw}'`);
    }
    if (out.some((t) => t.name === m[1])) throw new UsageError(`--tenants names tenant '${m[1]}' twice`);
    out.push({ name: m[1]!, inFlight });
  }
  return out;
}

/** "a=X,b=Y" for tenants named in --tenants; a value may itself contain '='. */
export function parseTenantMap(flag: string, raw: string | undefined, names: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (raw === undefined) return out;
  for (const part of raw.split(",")) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    if (eq <= 0 || part.slice(eq + 1) === "") throw new UsageError(`--${flag} must be a comma-separated list of NAME=VALUE, got '${part}'`);
    if (!names.includes(name)) throw new UsageError(`--${flag} names tenant '${name}', which is not in --tenants`);
    if (out.has(name)) throw new UsageError(`--${flag} names tenant '${name}' twice`);
    out.set(name, part.slice(eq + 1));
  }
  return out;
}

function positive(flag: string, name: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${flag}: ${name} must be a positive integer, got '${raw}'`);
  return n;
}

export interface TenantArgs {
  tenants: string;
  tenantKeys?: string;
  tenantMaxTokens?: string;
  tenantPromptTokens?: string;
  solo?: string;
}

/**
 * Every tenant's spec from the command line: per-tenant values where given,
 * else the shared --api-key, --prompt-tokens and --max-tokens.
 */
export function tenantSpecs(
  args: TenantArgs,
  defaults: { apiKey: string | undefined; promptTokens: number; maxTokens: number },
): { specs: TenantSpec[]; solo: string[] } {
  const list = parseTenantList(args.tenants);
  const names = list.map((t) => t.name);
  const keys = parseTenantMap("tenant-keys", args.tenantKeys, names);
  const maxTokens = parseTenantMap("tenant-max-tokens", args.tenantMaxTokens, names);
  const promptTokens = parseTenantMap("tenant-prompt-tokens", args.tenantPromptTokens, names);
  const specs = list.map(({ name, inFlight }): TenantSpec => {
    const apiKey = keys.get(name) ?? defaults.apiKey;
    const mt = maxTokens.get(name);
    const pt = promptTokens.get(name);
    return {
      name,
      inFlight,
      ...(apiKey ? { apiKey } : {}),
      promptTokens: pt === undefined ? defaults.promptTokens : positive("tenant-prompt-tokens", name, pt),
      maxTokens: mt === undefined ? defaults.maxTokens : positive("tenant-max-tokens", name, mt),
    };
  });
  const solo = args.solo === undefined ? [] : args.solo.split(",").map((s) => s.trim());
  for (const s of solo) if (!names.includes(s)) throw new UsageError(`--solo names tenant '${s}', which is not in --tenants`);
  return { specs, solo: [...new Set(solo)] };
}

/** Runs the given tenants together and returns one result per tenant. */
export async function runTenantPhase(w: TenantWorkload, phase: string, tenants: readonly TenantSpec[], phaseIndex = 0): Promise<PhaseResult> {
  // One controller for the deadline and the caller's signal: requests abort on either.
  const stop = new AbortController();
  // Every in-flight request listens on this one signal: 17+ listeners is by design, not a leak.
  setMaxListeners(0, stop.signal);
  const onOuter = () => stop.abort();
  if (w.signal?.aborted) onOuter();
  w.signal?.addEventListener("abort", onOuter, { once: true });
  const timer = w.durationS === null ? null : setTimeout(() => stop.abort(), w.durationS * 1000);
  const started = performance.now();
  try {
    const results = await Promise.all(
      tenants.map(async (spec) => {
        const firstIndex = (phaseIndex * w.tenants.length + Math.max(0, w.tenants.indexOf(spec))) * INDEX_STRIDE;
        const opts: LoadOptions = {
          url: w.url,
          model: w.model,
          concurrency: spec.inFlight,
          requests: w.requestsPerTenant ?? Infinity,
          promptTokens: spec.promptTokens,
          maxTokens: spec.maxTokens,
          ...(spec.apiKey ? { apiKey: spec.apiKey } : {}),
          endpoint: w.endpoint,
          ignoreEos: w.ignoreEos,
          timeoutMs: w.timeoutMs,
          signal: stop.signal,
        };
        const samples: RequestSample[] = [];
        let next = 0;
        let lastEnd = started;
        const loop = async () => {
          while (!stop.signal.aborted && next < opts.requests) {
            samples.push(await runOne(opts, firstIndex + next++));
            lastEnd = performance.now();
          }
        };
        await Promise.all(Array.from({ length: Math.min(spec.inFlight, opts.requests) }, loop));
        const wallSeconds = w.durationS ?? (lastEnd - started) / 1000;
        return summarizeTenant(spec, samples, wallSeconds);
      }),
    );
    return { phase, tenants: results };
  } finally {
    if (timer) clearTimeout(timer);
    w.signal?.removeEventListener("abort", onOuter);
  }
}

/** The mixed phase, then each --solo tenant alone with the same settings. */
export async function runTenantWorkload(w: TenantWorkload, solo: readonly string[], onPhase?: (p: PhaseResult) => void): Promise<PhaseResult[]> {
  const phases: PhaseResult[] = [];
  const run = async (name: string, tenants: TenantSpec[]) => {
    const p = await runTenantPhase(w, name, tenants, phases.length);
    onPhase?.(p);
    phases.push(p);
  };
  await run("mixed", w.tenants);
  for (const name of solo) {
    if (w.signal?.aborted) break;
    await run(
      `solo ${name}`,
      w.tenants.filter((t) => t.name === name),
    );
  }
  return phases;
}

/** One tenant's numbers. Pure: samples in, summary out. */
export function summarizeTenant(spec: TenantSpec, samples: readonly RequestSample[], wallSeconds: number): TenantResult {
  const ok = samples.filter((s) => s.ok);
  const cut = samples.filter((s) => !s.ok && s.aborted);
  const failed = samples.filter((s) => !s.ok && !s.aborted);
  const outputTokens = ok.reduce((n, s) => n + s.outputTokens, 0) + cut.reduce((n, s) => n + s.outputTokens, 0);
  return {
    tenant: spec.name,
    inFlight: spec.inFlight,
    promptTokens: spec.promptTokens,
    maxTokens: spec.maxTokens,
    requests: samples.length,
    completed: ok.length,
    errors: failed.length,
    cut: cut.length,
    errorSamples: errorSamplesOf(failed),
    wallSeconds,
    outputTokens,
    outputTokensPerSecond: wallSeconds > 0 ? outputTokens / wallSeconds : 0,
    ttftMs: summarize([...ok, ...cut].map((s) => s.ttftMs).filter(Number.isFinite)),
    itlMs: summarize(ok.flatMap((s) => s.itlMs)),
    e2eMs: summarize(ok.map((s) => s.e2eMs)),
    promptTokensMedian: promptTokensMedianOf(ok),
  };
}
