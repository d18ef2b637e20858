// How long one request's own sampling may hold the shared step loop.
//
// Every running job samples after each decode, and the loop waits for all of
// them before the next one (node-llama-cpp's dispatch awaits every sequence's
// sampling), so one job whose sampling is slow sets everyone's pace. Without a
// grammar, sampling is bounded by the vocabulary (about 2-3 ms at 32k tokens
// on these CPUs); under a grammar, llama.cpp checks every candidate against
// every live grammar stack, which grows with the schema: measured on
// llama-2-tiny-random (32k vocabulary), a 1000-value enum of 110-character
// strings took 170-490 ms a token and a json_object grammar 1-20 ms, against
// a 1-3 ms decode. Such a job is failed (and its grammar refused for a while)
// once it crosses either bound:
//   - stepMs: its sampling took longer than this after one decode;
//   - excessMs: the sum, over its tokens, of its sampling time beyond freeMs
//     a token (a schema just under stepMs would otherwise slow every tenant
//     for a whole long answer).
// The bound cannot interrupt a native call: a step may run over by what one
// token's sampling costs; the front's schema limits bound that.
import type { EngineErrorPayload, GrammarSpec } from "./protocol.js";

export interface SampleBudget {
  /** Most a job's sampling may take after one decode, in ms. */
  stepMs: number;
  /** Sampling time per token that is never counted against excessMs, in ms. */
  freeMs: number;
  /** Most a job's sampling may exceed freeMs in all, summed over its tokens, in ms. */
  excessMs: number;
  /** How long a grammar that crossed a bound is refused at submit, in ms. */
  refuseForMs: number;
}

/**
 * 250 ms: a stream's inter-token latency stays under a quarter of a second
 * (readable as a stream) for the one step that reveals the grammar, about 100
 * times a step on the test models and still above what a json_object grammar
 * costs on a 32k vocabulary under load. 50 ms a token free: well above a
 * legitimate schema's 1-20 ms, so only pathological ones accrue excess.
 */
export const DEFAULT_SAMPLE_BUDGET: SampleBudget = { stepMs: 250, freeMs: 50, excessMs: 1000, refuseForMs: 10 * 60_000 };

export interface SampledJob {
  /** Sampling time beyond freeMs, summed over the job's tokens so far. */
  sampleExcessMs: number;
  /** Set once the job crossed a bound: the longest sampling of one token seen, and the excess. */
  slowSampling: { maxMs: number; excessMs: number } | null;
}

/** Counts one token's sampling time against the job's budget; marks the job once over. */
export function chargeSampling(job: SampledJob, ms: number, budget: SampleBudget): void {
  job.sampleExcessMs += Math.max(0, ms - budget.freeMs);
  if (job.slowSampling === null && (ms > budget.stepMs || job.sampleExcessMs > budget.excessMs)) {
    job.slowSampling = { maxMs: ms, excessMs: job.sampleExcessMs };
  }
}

/** The parameter a grammar came from: tool calls are wrapped in their tags. */
function grammarParam(spec: GrammarSpec): string {
  return spec.kind === "json_schema" && spec.wrap ? "tool_choice" : "response_format";
}

export function slowSamplingError(spec: GrammarSpec, slow: { maxMs: number; excessMs: number }, budget: SampleBudget): EngineErrorPayload {
  const param = grammarParam(spec);
  return {
    code: "invalid_value",
    param,
    message:
      `The output grammar built from '${param}' is too slow to sample with: one token took ${Math.round(slow.maxMs)} ms ` +
      `(the bound is ${budget.stepMs} ms a token, and ${budget.excessMs} ms beyond ${budget.freeMs} ms a token over a request), ` +
      "which would hold every other request on this model. Use a smaller schema (fewer enum values or anyOf alternatives); " +
      `this one is refused for the next ${Math.round(budget.refuseForMs / 60_000)} minutes.`,
  };
}

/** A tenant whose grammars crossed a bound this often within TENANT_WINDOW_MS... */
const TENANT_STRIKES = 2;
const TENANT_WINDOW_MS = 60_000;
/** ...has its grammar-constrained requests refused this long (a fresh schema each time would otherwise cost a slow step each). */
const TENANT_REFUSE_MS = 60_000;

/**
 * Grammars that crossed a bound, refused at submit until their time is up,
 * and the tenants that keep sending such grammars (bounded: oldest out first).
 */
export class SlowGrammars {
  private readonly until = new Map<string, number>();
  private readonly tenants = new Map<string, { strikesMs: number[]; untilMs: number }>();

  constructor(
    private readonly refuseForMs: number,
    private readonly maxEntries = 256,
    /**
     * Tenants never refused as a whole (their schemas still are): "default" is
     * every client of a server without --tenants, as in crashQuarantine.ts.
     */
    private readonly exemptTenants: readonly string[] = ["default"],
  ) {}

  add(spec: GrammarSpec, tenant: string, nowMs: number): void {
    const key = JSON.stringify(spec);
    this.until.delete(key);
    this.until.set(key, nowMs + this.refuseForMs);
    if (this.until.size > this.maxEntries) this.until.delete(this.until.keys().next().value!);
    if (this.exemptTenants.includes(tenant)) return;
    const t = this.tenants.get(tenant) ?? { strikesMs: [], untilMs: 0 };
    this.tenants.delete(tenant);
    this.tenants.set(tenant, t);
    t.strikesMs = [...t.strikesMs.filter((at) => at > nowMs - TENANT_WINDOW_MS), nowMs];
    if (t.strikesMs.length >= TENANT_STRIKES) t.untilMs = nowMs + TENANT_REFUSE_MS;
    if (this.tenants.size > this.maxEntries) this.tenants.delete(this.tenants.keys().next().value!);
  }

  /** The error that refuses `spec` from `tenant` now; null when it is not refused. */
  check(spec: GrammarSpec, tenant: string, nowMs: number): EngineErrorPayload | null {
    if (this.until.size === 0) return null;
    const param = grammarParam(spec);
    const t = this.tenants.get(tenant);
    if (t && t.untilMs > nowMs) {
      return {
        code: "invalid_value",
        param,
        message:
          `Your output grammars were too slow to sample with on this model ${t.strikesMs.length} times within a minute; requests with '${param}' ` +
          `are refused for ${Math.ceil((t.untilMs - nowMs) / 1000)} more seconds. Use a smaller schema (fewer enum values or anyOf alternatives).`,
      };
    }
    const key = JSON.stringify(spec);
    const until = this.until.get(key);
    if (until === undefined) return null;
    if (until <= nowMs) {
      this.until.delete(key);
      return null;
    }
    return {
      code: "invalid_value",
      param,
      message: `The output grammar built from '${param}' was too slow to sample with on this model and is refused for ${Math.ceil((until - nowMs) / 1000)} more seconds. Use a smaller schema (fewer enum values or anyOf alternatives).`,
    };
  }
}
