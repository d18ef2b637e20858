// One generation request's passage through the tenant's quota: reserved with a
// pre-flight estimate before the engine sees it, settled with the exact usage
// when it ends (refunding what was reserved but not used), and refunded whole
// when the engine never ran it (a 400 from the engine, a worker restart before
// admission). The rate-limit headers go on the response before any body byte.
import { SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import type { Request, Response } from "express";
import { childSpan, traceHeaders } from "../../telemetry/tracing.js";
import { refuseEarly, type EngineEvent, type EngineRequest, type FinishReason, type Usage } from "../../engine/index.js";
import type { Quota, Reservation } from "../quota/quota.js";
import type { QueueTicket, ServerQueue } from "../quota/serverQueue.js";
import type { GenerationStatus, Metrics } from "../metrics.js";
import type { ServedModel } from "../servedModels.js";
import { engineTenant, hasTokenLimit, type Tenant } from "../tenants/types.js";
import { ApiError, fromEngineError } from "../errors.js";
import { CLIENT_LEFT, clientAbort, logUsage, recordUsage, usageSubject, type RouteDeps } from "./context.js";
import { firstOutput } from "./firstOutput.js";
import { genAiOperation, genAiRequestAttributes, genAiUsageAttributes } from "./telemetry.js";
import { admitAll, type Admitted } from "./generation.js";

/** How long a request cut short waits for the engine's count of what it used before the reservation is charged instead. */
export const FINAL_USAGE_WAIT_MS = 10_000;

/** What each choice of a request used, as the engine reports it at its end (null: no report). */
export interface ChoiceUsage {
  usage: Promise<Usage | null>;
  /** The choice that read the prompt (a fork group's leader, or a request of its own): its prompt tokens are billed. */
  billsPrompt: boolean;
}

export class QuotaGate {
  private state: "reserved" | "running" | "settled" = "reserved";
  private choices: readonly ChoiceUsage[] = [];
  // The quota's calls for this request, in the order the request made them
  // (started before settle): each waits for the one before, whatever it did.
  private pending: Promise<void> = Promise.resolve();

  private constructor(
    private readonly ledger: Quota,
    private readonly tenant: Tenant,
    private readonly reservation: Reservation,
    private readonly ticket: QueueTicket | null,
    private readonly estimate: () => number,
  ) {}

  /**
   * Reserves the request's estimated tokens for `tenant` and a place in the
   * server's queue, or throws the 429 that says which limit is full. The
   * tenant's limits are asked first: when its budget is spent, "retry in 1 s"
   * would be the wrong answer. `queue` null: the request takes no KV slot
   * (embeddings run on their own context), so it holds no place among the
   * slots' waiters.
   *
   * `estimate` is called only when a number is needed: at once for a tenant
   * with a token limit to check it against, otherwise only if the request
   * ends without exact usage. Counting loads tiktoken's tokenizer (about 60
   * MiB), which a server whose tenants have no token limits never needs.
   */
  static async open(ledger: Quota, queue: ServerQueue | null, metrics: Metrics, tenant: Tenant, res: Response, estimate: () => number): Promise<QuotaGate> {
    let estimated: number | null = null;
    const once = () => (estimated ??= estimate());
    // A child of the request's span when it is traced: the tenant's quota
    // decision (admitted, or the reason for the 429 or 503) and its time.
    const span = childSpan("llamux.quota.reserve");
    let result: Awaited<ReturnType<Quota["reserve"]>>;
    try {
      result = await ledger.reserve(tenant, { estimatedTokens: hasTokenLimit(tenant.limits) ? once() : 0 });
    } catch (err) {
      if (span) endQuotaSpan(span, tenant, "error", estimated);
      throw err;
    }
    if (!result.ok) {
      metrics.rejections.inc({ tenant: tenant.id, reason: rejectionReason(result.error) });
      if (span) endQuotaSpan(span, tenant, rejectionReason(result.error), estimated);
      throw result.error;
    }
    // After the await: the server queue is checked and entered in one tick.
    if (queue && !queue.hasRoom()) {
      void ledger.cancel(result.reservation).catch(() => undefined);
      metrics.rejections.inc({ tenant: tenant.id, reason: "server_queue_full" });
      if (span) endQuotaSpan(span, tenant, "server_queue_full", estimated);
      throw queue.fullError();
    }
    res.set(result.headers);
    if (span) endQuotaSpan(span, tenant, "admitted", estimated);
    return new QuotaGate(ledger, tenant, result.reservation, queue?.enter() ?? null, once);
  }

  /**
   * The engine has counted the request with the served model's tokenizer:
   * `boundTokens` is the most it can use (its prompt, plus every token it may
   * generate). For a tenant with a token limit the reservation becomes that
   * bound, so no settle can take a limit past what admission allowed; throws
   * the 429 when the bound does not fit, having refunded the reservation at
   * once: in a burst whose estimates were all too low, each refused request
   * must give its tokens back before the next one's bound is checked, or
   * every one of them is refused and nothing is served.
   */
  async confirm(boundTokens: number): Promise<void> {
    if (this.state !== "reserved" || !hasTokenLimit(this.tenant.limits)) return;
    const span = childSpan("llamux.quota.confirm");
    let error: ApiError | null;
    try {
      error = await this.ledger.resize(this.tenant, this.reservation, boundTokens, true);
    } catch (err) {
      if (span) endQuotaSpan(span, this.tenant, "error", boundTokens);
      throw err;
    }
    if (span) endQuotaSpan(span, this.tenant, error ? rejectionReason(error) : "admitted", boundTokens);
    if (!error) return;
    this.state = "settled";
    this.ticket?.close();
    await this.ledger.cancel(this.reservation);
    throw error;
  }

  /** Where the engine's count of what each choice used will come from, should the request be cut short. */
  track(choices: readonly ChoiceUsage[]): void {
    this.choices = choices;
  }

  /** The engine is generating for the request: it counts as running, no longer queued. */
  started(): void {
    if (this.state !== "reserved") return;
    this.state = "running";
    this.inOrder(() => this.ledger.started(this.reservation));
    this.ticket?.started();
  }

  /**
   * Exact usage is known: charge it. Resolves once it is charged and stored
   * (never rejects: a quota reports its own failures); the routes wait for it
   * before the response ends, so what was acknowledged is charged, on every
   * replica, before the client can send its next request.
   */
  settle(usage: Usage): Promise<void> {
    if (this.state === "settled") return this.pending;
    this.state = "settled";
    return this.inOrder(() => this.ledger.settle(this.reservation, usage.promptTokens + usage.completionTokens));
  }

  /** Queues a quota call after the ones before it; a failure is the quota's to report (it does), not the request's. */
  private inOrder(call: () => Promise<void>): Promise<void> {
    this.pending = this.pending.then(call).catch(() => undefined);
    return this.pending;
  }

  /**
   * The request is over, whichever way. Never admitted: refund everything.
   * Admitted but ended without usage (client left, an engine error): charge
   * what the engine reports each choice used until it stopped (a cancel
   * takes effect at the next step boundary; the report follows), and the
   * reservation when there is no report (worker died: it did work nobody
   * can count). Returns once charged.
   */
  /**
   * The engine refused the request as invalid (a 400): it never runs, but it
   * keeps its request unit, so invalid requests count against the tenant's
   * requests per minute like any other (their tokens are refunded).
   */
  refusedAsInvalid(): void {
    if (this.state !== "reserved") return;
    this.state = "settled";
    this.ticket?.close();
    this.inOrder(() => this.ledger.settle(this.reservation, 0));
  }

  close(): Promise<void> {
    const state = this.state;
    this.state = "settled";
    this.ticket?.close();
    if (state === "reserved") return this.inOrder(() => this.ledger.cancel(this.reservation));
    if (state !== "running") return this.pending;
    // With a token limit the reservation is the request's bound (confirm()),
    // never less than it used; without one, nothing was reserved.
    const fallback = () => (hasTokenLimit(this.tenant.limits) ? this.ledger.held(this.reservation) : this.estimate());
    if (this.choices.length === 0) return this.inOrder(() => this.ledger.settle(this.reservation, fallback()));
    return usedByChoices(this.choices, FINAL_USAGE_WAIT_MS).then((used) => this.inOrder(() => this.ledger.settle(this.reservation, used ?? fallback())));
  }
}

/**
 * Tokens the choices used by the engine's reports (a prompt billed once, by
 * the choice that read it), waiting at most `waitMs` for them; null when none
 * came.
 */
async function usedByChoices(choices: readonly ChoiceUsage[], waitMs: number): Promise<number | null> {
  if (choices.length === 0) return null;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), waitMs)));
  const usages = await Promise.all(choices.map((c) => Promise.race([c.usage, late])));
  clearTimeout(timer);
  if (usages.every((u) => u === null)) return null;
  let tokens = 0;
  usages.forEach((u, i) => {
    if (u) tokens += u.completionTokens + (choices[i]!.billsPrompt ? u.promptTokens : 0);
  });
  return tokens;
}

/**
 * The most tokens the admitted choices can use: each prompt as the engine
 * tokenized it, once per fork group, plus each choice's max_tokens (without
 * one, the rest of its slot's context).
 */
export function boundTokens(reqs: readonly EngineRequest[], promptTokens: readonly number[], contextPerSlot: number): number {
  let tokens = 0;
  reqs.forEach((r, i) => {
    const prompt = promptTokens[i] ?? 0;
    if ((r.fork?.index ?? 0) === 0) tokens += prompt;
    tokens += r.maxTokens ?? Math.max(0, contextPerSlot - prompt);
  });
  return tokens;
}

/**
 * A request refused as invalid before it reached the engine still costs its
 * tenant one request against requests per minute (no tokens): otherwise a
 * tenant could make the server validate, and refuse, as much as it likes.
 * Over the limit, the 429 is the answer, as OpenAI checks limits first.
 */
export async function chargeRefusedRequest(deps: RouteDeps, tenant: Tenant, res: Response): Promise<void> {
  const result = await deps.quota.reserve(tenant, { estimatedTokens: 0 });
  if (!result.ok) {
    deps.metrics.rejections.inc({ tenant: tenant.id, reason: rejectionReason(result.error) });
    throw result.error;
  }
  // Nothing to store (0 tokens); a failure to settle leaves the unit charged, which is what is meant.
  void deps.quota.settle(result.reservation, 0).catch(() => undefined);
  res.set(result.headers);
}

/** The abort reason (and rejection reason) of a request shed by --queue-timeout-ms. */
const QUEUE_TIMEOUT = "queue_timeout";

/** Ends a quota span with its decision; `tokens`: what was checked against the tenant's token limits (null: none). */
function endQuotaSpan(span: Span, tenant: Tenant, decision: string, tokens: number | null): void {
  span.setAttributes({ "llamux.tenant.id": tenant.id, "llamux.quota.decision": decision });
  if (tokens !== null) span.setAttribute("llamux.quota.tokens", tokens);
  if (decision !== "admitted") span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

function rejectionReason(err: ApiError): string {
  if (err.code === "rate_limit_exceeded") return `rate_limit_${err.type}`;
  return err.code;
}

export interface GenerationMeta {
  model: string;
  fingerprint: string;
  includeUsage: boolean;
  /** Called once with the request's exact usage, before its last bytes are sent; they wait for what it returns. */
  onUsage: (u: Usage) => void | Promise<void>;
}

/**
 * The life of one generation request after validation, shared by chat and
 * completions: reserve quota and a place in the server's queue, submit, wait
 * for the first output (shedding the request past --queue-timeout-ms), let
 * `respond` write the body, and settle or refund the reservation however it ends.
 */
export async function runGeneration(
  deps: RouteDeps,
  req: Request,
  res: Response,
  g: {
    tenant: Tenant;
    /** The model as the client named it (responses echo that name). */
    model: string;
    /** The model's engine and queue (requireModel). */
    served: ServedModel;
    includeUsage: boolean;
    engineReqs: EngineRequest[];
    /** The pre-flight token estimate (see QuotaGate.open: called only when needed). */
    estimate: () => number;
  },
  respond: (choices: Admitted[], meta: GenerationMeta) => Promise<void>,
): Promise<void> {
  const arrivedMs = performance.now();
  res.locals.model = g.model;
  const model = g.model;
  const tenant = g.tenant.id;
  const ended = (status: GenerationStatus, finishReason = "none") => deps.metrics.generations.inc({ model, tenant, status, finish_reason: finishReason });
  // What the served model surely refuses (a prompt too long to fit, logit_bias
  // ids outside its vocabulary) is refused here, before the request takes a
  // place in any queue or costs the worker a tokenization.
  const info = g.served.engine.model;
  const early = info ? g.engineReqs.map((r) => refuseEarly(r, info)).find((e) => e !== null) : undefined;
  if (early) {
    await chargeRefusedRequest(deps, g.tenant, res);
    for (let i = 0; i < g.engineReqs.length; i++) ended("error");
    throw fromEngineError(early);
  }
  // The engine knows the tenant by its incarnation: a tenant re-created under
  // a deleted one's id shares no KV cache with it (Tenant.incarnation).
  const scope = engineTenant(g.tenant);
  // The request's span (middleware/tracing.ts) carries the GenAI attributes,
  // and its context goes to the worker, whose spans join the trace.
  const span = trace.getActiveSpan();
  const traced = span ? traceHeaders(span) : null;
  if (span && traced) span.setAttributes(genAiRequestAttributes(req.path, g.model, g.engineReqs[0]));
  const engineReqs = g.engineReqs.map((r) => (r.tenant === scope && !traced ? r : { ...r, tenant: scope, ...(traced ? { trace: traced } : {}) }));
  const finishReasons: string[] = [];
  const gate = await QuotaGate.open(deps.quota, g.served.queue, deps.metrics, g.tenant, res, g.estimate);
  const abort = clientAbort(req, res);
  // A choice that ended without a finish or an engine error was cut short: by
  // its client, or by the server (the reader failed, admitAll gave up on it).
  const cutShort = (): GenerationStatus => (abort.signal.reason === CLIENT_LEFT ? "cancelled" : "error");
  try {
    let admitted: Admitted[];
    try {
      admitted = await admitAll(g.served.engine, engineReqs, abort);
    } catch (err) {
      // A request the engine refuses as invalid (it read the prompt) is an error, not a cut.
      const invalid = err instanceof ApiError && err.status === 400;
      if (invalid) gate.refusedAsInvalid();
      for (let i = 0; i < engineReqs.length; i++) ended(invalid ? "error" : cutShort());
      throw err;
    }
    gate.track(admitted.map((a) => ({ usage: a.usage ?? Promise.resolve(null), billsPrompt: (engineReqs[a.index]?.fork?.index ?? 0) === 0 })));
    // The engine counted the prompt with the model's own tokenizer: hold the
    // request's true bound, or refuse it before it has run (nothing is sent yet).
    try {
      const contextPerSlot = g.served.engine.model?.contextPerSlot ?? 0;
      await gate.confirm(
        boundTokens(
          engineReqs,
          admitted.map((a) => a.promptTokens),
          contextPerSlot,
        ),
      );
    } catch (err) {
      if (err instanceof ApiError) deps.metrics.rejections.inc({ tenant, reason: rejectionReason(err) });
      throw err;
    }
    // Nothing is sent before the first output, so a request shed here gets a
    // plain 503; its choices are cancelled in the engine, and it never ran.
    const waitMs = deps.queueTimeoutMs === 0 ? 0 : Math.max(1, deps.queueTimeoutMs - (performance.now() - arrivedMs));
    const startedChoices = await firstOutput(admitted, waitMs);
    if (startedChoices === null) {
      abort.abort(QUEUE_TIMEOUT);
      deps.metrics.rejections.inc({ tenant, reason: QUEUE_TIMEOUT });
      throw new ApiError(
        "queue_timeout",
        `The request waited ${deps.queueTimeoutMs} ms for a free slot without starting (the server is overloaded) and was cancelled. Please try again later.`,
        null,
        1,
      );
    }
    // The client left while it waited: there is no one to write to (and an
    // SSE writer made for a closed response would wait for it forever).
    if (abort.signal.aborted) {
      for (let i = 0; i < admitted.length; i++) ended(cutShort());
      return;
    }
    admitted = startedChoices;
    // The engine reports a request's first output once it holds a slot and has
    // read the prompt: from then on it counts as running, not queued.
    const genAi = { gen_ai_operation_name: genAiOperation(req.path), gen_ai_request_model: model };
    let firstAtMs = 0;
    const observer: ChoiceObserver = {
      first: () => {
        gate.started();
        firstAtMs = performance.now();
        deps.metrics.ttftSeconds.observe({ model }, (firstAtMs - arrivedMs) / 1000);
        deps.metrics.genAi.timeToFirstToken.observe(genAi, (firstAtMs - arrivedMs) / 1000);
      },
      gap: (ms) => deps.metrics.itlSeconds.observe({ model }, ms / 1000),
      end: (how) => {
        const nowMs = performance.now();
        const errorType = how === "error" ? "engine_error" : how === "cut_short" ? cutShort() : "";
        deps.metrics.genAi.requestDuration.observe({ ...genAi, error_type: errorType }, (nowMs - arrivedMs) / 1000);
        if (how === "error") return ended("error");
        if (how === "cut_short") return ended(cutShort());
        const outputTokens = how.usage?.completionTokens ?? 0;
        if (outputTokens > 1 && firstAtMs > 0) deps.metrics.genAi.timePerOutputToken.observe(genAi, (nowMs - firstAtMs) / 1000 / (outputTokens - 1));
        ended("ok", how.finish);
        finishReasons.push(how.finish);
        if (how.usage?.prefillMs !== undefined) deps.metrics.prefillSeconds.observe({ model }, how.usage.prefillMs / 1000);
      },
    };
    const choices = admitted.map((c) => ({ ...c, events: observed(c.events, observer) }));
    await respond(choices, {
      model: g.model,
      fingerprint: deps.fingerprint,
      includeUsage: g.includeUsage,
      onUsage: (u) => {
        res.locals.usage = u; // for the access log line
        recordUsage(deps, g.model, g.tenant.id, u);
        if (traced) span!.setAttributes({ ...genAiUsageAttributes(u), "gen_ai.response.model": g.model, "gen_ai.response.finish_reasons": finishReasons });
        // Both before the last bytes: the quota's charge and the usage record.
        return Promise.all([gate.settle(u), logUsage(deps, usageSubject(res), g.served, "completions", u)]).then(() => undefined);
      },
    });
  } finally {
    // However the response ended (an engine error in one of n choices, say),
    // choices still running have no reader left: cancel them in the engine.
    // After a normal end every choice has finished and this does nothing.
    abort.abort();
    // Not awaited: the response is over; the charge follows the engine's report.
    void gate.close().catch(() => undefined);
  }
}

interface ChoiceObserver {
  /** The choice's first event. */
  first(): void;
  /** Time between its later events. */
  gap(ms: number): void;
  /** Once per choice, before the event that ends it is passed on: its final delta, an engine error, or neither. */
  end(how: { finish: FinishReason; usage: Usage | undefined } | "error" | "cut_short"): void;
}

/** Passes one choice's `events` through to its reader, telling `o` about them: O(1) per engine step. */
async function* observed(events: AsyncIterableIterator<EngineEvent>, o: ChoiceObserver): AsyncGenerator<EngineEvent, void, undefined> {
  let lastMs: number | null = null;
  let over = false;
  try {
    for await (const ev of events) {
      const nowMs = performance.now();
      if (lastMs === null) o.first();
      else o.gap(nowMs - lastMs);
      lastMs = nowMs;
      if (ev.type === "error" || (ev.type === "delta" && ev.finish)) {
        over = true;
        o.end(ev.type === "error" ? "error" : { finish: ev.finish!, usage: ev.usage });
      }
      yield ev;
    }
  } finally {
    // The engine stream closed early (a cancel) or the reader stopped reading.
    if (!over) o.end("cut_short");
  }
}
