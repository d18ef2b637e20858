// Who to blame when the engine worker dies, and whom to stop serving for a
// while so that one client cannot keep the engine down for everyone.
//
// A native abort inside llama.cpp (a prompt the tokenizer cannot encode, say)
// kills the worker and every request in it; the front restarts it in 1-2 s.
// A client replaying such a request kept the engine down most of the time
// (10 crashes in 15 s failed 85 % of another tenant's requests). The front
// knows what each request was doing when the worker died, so:
//   - suspects (crashSuspects): the first request the worker had not answered
//     (it handles messages in order and tokenizes a submit synchronously, so
//     it died reading that one; those sent after it were never read: blaming
//     them too let an attacker share its strikes with a victim retrying at
//     the same moment); else those admitted with no output yet (their prefill
//     was in the last decodes); else everyone in flight;
//   - each crash gives strikes: 1 shared among the suspects' distinct tenants,
//     and 1 shared among their distinct requests (fingerprint: hash of model
//     and prompt), so a bystander that happened to be read in the same step
//     gets part of a strike, never a whole one;
//   - `strikes` within `windowMs` quarantine a tenant for `tenantCooldownMs`
//     and a request (any tenant sending it) for `requestCooldownMs`.
// Pure: the clock is passed in; the EngineClient feeds it and asks it.
import { createHash } from "node:crypto";

export type InFlightPhase = "sent" | "accepted" | "running";

export interface InFlightRequest {
  tenant: string;
  /** Hash of model and prompt (requestFingerprint). */
  fingerprint: string;
  /** sent: the worker has not answered it; accepted: answered, no output yet; running: output seen. */
  phase: InFlightPhase;
}

export interface CrashQuarantineOptions {
  /** Strikes count within this window, in ms. */
  windowMs: number;
  /** Strikes within the window that quarantine a tenant or a request. */
  strikes: number;
  tenantCooldownMs: number;
  requestCooldownMs: number;
  /** Bound on the fingerprints remembered (oldest out first). */
  maxFingerprints: number;
  /**
   * Tenants never quarantined as a whole (their requests' fingerprints still
   * are): "default" is every client of a server without --tenants
   * (ANONYMOUS_TENANT in src/tenants/types.ts), and refusing it would refuse
   * everyone, the outage this exists to prevent.
   */
  exemptTenants: readonly string[];
}

/** Two crashes within a minute: a coincidence once, a pattern twice. */
export const DEFAULT_CRASH_QUARANTINE: CrashQuarantineOptions = {
  windowMs: 60_000,
  strikes: 2,
  tenantCooldownMs: 60_000,
  requestCooldownMs: 10 * 60_000,
  maxFingerprints: 1024,
  exemptTenants: ["default"],
};

/** Which of the requests in flight when the worker died (in the order they were sent) are suspected of killing it (see the header). */
export function crashSuspects<T extends { phase: InFlightPhase }>(inflight: readonly T[]): T[] {
  const unread = inflight.find((r) => r.phase === "sent");
  if (unread) return [unread];
  const prefilling = inflight.filter((r) => r.phase === "accepted");
  return prefilling.length > 0 ? prefilling : [...inflight];
}

/**
 * The requests in flight when the worker died that may be sent again to the
 * next worker, unseen by their clients: when the worker died reading one
 * request (the suspect), every other that had produced no output yet is
 * innocent, and nothing of it reached its client. A request with output (the
 * client has tokens) cannot be replayed, and when no request was unread the
 * ones without output are the suspects themselves. Each is replayed at most
 * once (`replayed`), so a wrong guess costs one more crash, not a loop.
 */
export function crashReplayable<T extends { phase: InFlightPhase; replayed: boolean }>(inflight: readonly T[]): T[] {
  const unread = inflight.find((r) => r.phase === "sent");
  if (!unread) return [];
  return inflight.filter((r) => r !== unread && r.phase !== "running" && !r.replayed);
}

/** A request's identity across retries: the model and everything the prompt is made of. */
export function requestFingerprint(modelId: string, prompt: unknown): string {
  return createHash("sha256").update(modelId).update("\0").update(JSON.stringify(prompt)).digest("base64url").slice(0, 22);
}

export type Quarantined = { kind: "tenant" | "request"; untilMs: number; crashes: number };

interface Record {
  /** Times of the strikes within the window, with their weights. */
  strikes: Array<{ atMs: number; weight: number }>;
  untilMs: number;
}

export class CrashQuarantine {
  private readonly tenants = new Map<string, Record>();
  private readonly requests = new Map<string, Record>();
  readonly opts: CrashQuarantineOptions;

  constructor(opts: Partial<CrashQuarantineOptions> = {}) {
    this.opts = { ...DEFAULT_CRASH_QUARANTINE, ...opts };
  }

  /** One worker death with these suspects (crashSuspects' answer). */
  recordCrash(suspects: readonly InFlightRequest[], nowMs: number): void {
    const tenants = new Set(suspects.map((s) => s.tenant));
    const prints = new Set(suspects.map((s) => s.fingerprint));
    for (const t of tenants) if (!this.opts.exemptTenants.includes(t)) this.strike(this.tenants, t, 1 / tenants.size, nowMs, this.opts.tenantCooldownMs);
    for (const f of prints) this.strike(this.requests, f, 1 / prints.size, nowMs, this.opts.requestCooldownMs);
    while (this.requests.size > this.opts.maxFingerprints) this.requests.delete(this.requests.keys().next().value!);
    // Tenants are bounded by the configured ones; forget those with nothing left to remember.
    for (const [t, r] of this.tenants) if (r.untilMs <= nowMs && r.strikes.every((s) => s.atMs <= nowMs - this.opts.windowMs)) this.tenants.delete(t);
  }

  /** Whether a new request is refused now, and why; null: it may run. `fingerprint` is asked for only when requests are quarantined. */
  check(tenant: string, fingerprint: () => string, nowMs: number): Quarantined | null {
    const t = this.tenants.get(tenant);
    if (t && t.untilMs > nowMs) return { kind: "tenant", untilMs: t.untilMs, crashes: t.strikes.length };
    if (this.requests.size === 0) return null;
    const r = this.requests.get(fingerprint());
    if (r && r.untilMs > nowMs) return { kind: "request", untilMs: r.untilMs, crashes: r.strikes.length };
    return null;
  }

  /** Whether any request fingerprint is remembered (the caller may skip hashing when not). */
  get tracksRequests(): boolean {
    return this.requests.size > 0;
  }

  private strike(map: Map<string, Record>, key: string, weight: number, nowMs: number, cooldownMs: number): void {
    const rec = map.get(key) ?? { strikes: [], untilMs: 0 };
    map.delete(key); // most recent last
    map.set(key, rec);
    rec.strikes = rec.strikes.filter((s) => s.atMs > nowMs - this.opts.windowMs);
    rec.strikes.push({ atMs: nowMs, weight });
    const total = rec.strikes.reduce((n, s) => n + s.weight, 0);
    // A little slack: three thirds must make one.
    if (total >= this.opts.strikes - 1e-9) rec.untilMs = Math.max(rec.untilMs, nowMs + cooldownMs);
  }
}
