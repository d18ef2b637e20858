// One generation request's passage through the tenant's quota: reserved with a
// pre-flight estimate before the engine sees it, settled with the exact usage
// when it ends (refunding what was reserved but not used), and refunded whole
// when the engine never ran it (a 400 from the engine, a worker restart before
// admission). The rate-limit headers go on the response before any body byte.
import type { Request, Response } from "express";
import type { EngineRequest, Usage } from "../../engine/index.js";
import type { QuotaLedger, Reservation } from "../quota/ledger.js";
import type { Metrics } from "../metrics.js";
import type { Tenant } from "../tenants/types.js";
import { ApiError } from "../errors.js";
import { clientAbort, recordUsage, type RouteDeps } from "./context.js";
import { admitAll, type Admitted } from "./generation.js";

export class QuotaGate {
  private state: "reserved" | "running" | "settled" = "reserved";

  private constructor(
    private readonly ledger: QuotaLedger,
    private readonly reservation: Reservation,
  ) {}

  /** Reserves `estimatedTokens` for `tenant`, or throws the 429 that says which limit is full. */
  static open(ledger: QuotaLedger, metrics: Metrics, tenant: Tenant, res: Response, estimatedTokens: number): QuotaGate {
    const result = ledger.reserve(tenant, { estimatedTokens });
    if (!result.ok) {
      metrics.rejections.inc({ tenant: tenant.id, reason: rejectionReason(result.error) });
      throw result.error;
    }
    res.set(result.headers);
    return new QuotaGate(ledger, result.reservation);
  }

  /** The engine is generating for the request: it counts as running, no longer queued. */
  started(): void {
    if (this.state !== "reserved") return;
    this.state = "running";
    this.ledger.started(this.reservation);
  }

  /** Exact usage is known: charge it (before the response ends, so what was acknowledged is stored). */
  settle(usage: Usage): void {
    if (this.state === "settled") return;
    this.state = "settled";
    this.ledger.settle(this.reservation, usage.promptTokens + usage.completionTokens);
  }

  /**
   * The request is over, whichever way. Never admitted: refund everything.
   * Admitted but ended without usage (client left, worker died): keep the
   * estimate, since the engine did work we cannot count exactly.
   */
  close(): void {
    if (this.state === "reserved") this.ledger.cancel(this.reservation);
    else if (this.state === "running") this.ledger.settle(this.reservation, this.reservation.estimatedTokens);
    this.state = "settled";
  }
}

function rejectionReason(err: ApiError): string {
  if (err.code === "rate_limit_exceeded") return `rate_limit_${err.type}`;
  return err.code;
}

export interface GenerationMeta {
  model: string;
  fingerprint: string;
  includeUsage: boolean;
  /** Called once with the request's exact usage, before its last bytes are sent. */
  onUsage: (u: Usage) => void;
}

/**
 * The life of one generation request after validation, shared by chat and
 * completions: reserve quota, submit and wait for admission, let `respond`
 * write the body, and settle or refund the reservation however it ends.
 */
export async function runGeneration(
  deps: RouteDeps,
  req: Request,
  res: Response,
  g: { tenant: Tenant; model: string; includeUsage: boolean; engineReqs: EngineRequest[]; estimatedTokens: number },
  respond: (choices: Admitted[], meta: GenerationMeta) => Promise<void>,
): Promise<void> {
  const arrivedMs = performance.now();
  res.locals.model = g.model;
  const gate = QuotaGate.open(deps.quota, deps.metrics, g.tenant, res, g.estimatedTokens);
  try {
    const admitted = await admitAll(deps.engine, g.engineReqs, clientAbort(req, res));
    // The engine reports a request's first output once it holds a slot and has
    // read the prompt: from then on it counts as running, not queued.
    const model = g.model;
    const onFirst = () => {
      gate.started();
      deps.metrics.ttftSeconds.observe({ model }, (performance.now() - arrivedMs) / 1000);
    };
    const onGap = (ms: number) => deps.metrics.itlSeconds.observe({ model }, ms / 1000);
    const choices = admitted.map((c) => ({ ...c, events: timed(c.events, onFirst, onGap) }));
    await respond(choices, {
      model: g.model,
      fingerprint: deps.fingerprint,
      includeUsage: g.includeUsage,
      onUsage: (u) => {
        gate.settle(u);
        res.locals.usage = u; // for the access log line
        recordUsage(deps, g.model, g.tenant.id, u);
      },
    });
  } finally {
    gate.close();
  }
}

/**
 * Passes `events` through, calling `first` when the first one arrives and
 * `gap` with the time between later ones: O(1) per engine step.
 */
async function* timed<T>(events: AsyncIterableIterator<T>, first: () => void, gap: (ms: number) => void): AsyncGenerator<T, void, undefined> {
  let lastMs: number | null = null;
  for await (const ev of events) {
    const nowMs = performance.now();
    if (lastMs === null) first();
    else gap(nowMs - lastMs);
    lastMs = nowMs;
    yield ev;
  }
}
