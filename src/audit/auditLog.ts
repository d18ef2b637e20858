// What the HTTP layer calls to audit: admin actions (awaited, one record
// each) and refused authentications (fire and forget, rate-limited by
// RefusalWindow). Never holds a key: admin actors are named by their key's
// fingerprint, refused keys by theirs.
import { createHash } from "node:crypto";
import type { Request, Response } from "express";
import type { Logger } from "../logger.js";
import type { AuditStore } from "./auditStore.js";
import type { AuditActor, AuditEventType, JsonValue } from "./record.js";
import { RefusalWindow, type RefusalLimits } from "./refusals.js";

export const DEFAULT_REFUSAL_LIMITS: RefusalLimits = { perAddress: 10, total: 100, windowMs: 60_000 };

/** Which credential a refused request presented (or lacked). */
export type RefusedCredential = "api_key" | "admin_key" | "metrics_token" | "batch_dispatch";

export interface Refusal {
  credential: RefusedCredential;
  /** missing: no credential sent; incorrect: one that matches nothing (unknown, revoked or wrong). */
  reason: "missing" | "incorrect";
  /** The presented secret, only to fingerprint it; never stored. */
  presented: string | null;
}

/** "sha256:" + 8 hex of a secret's SHA-256: enough to tell attempts apart, useless to guess it from. */
export function fingerprint(secret: string): string {
  return `sha256:${createHash("sha256").update(secret, "utf8").digest("hex").slice(0, 8)}`;
}

/** The connection's address, IPv4-mapped IPv6 written as IPv4; "unknown" when the socket has none. */
export function remoteAddress(req: Request): string {
  const a = req.socket.remoteAddress ?? "unknown";
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice("::ffff:".length) : a;
}

export interface AuditLogOptions {
  store: AuditStore;
  log: Logger;
  /** LLAMUX_ADMIN_KEY, to name admin actors by its fingerprint; null: no admin API. */
  adminKey: string | null;
  refusalLimits?: RefusalLimits;
  nowMs?: () => number;
}

export class AuditLog {
  readonly store: AuditStore;
  private readonly log: Logger;
  private readonly adminActorId: string | null;
  private readonly now: () => number;
  private readonly window: RefusalWindow;
  private readonly pending = new Set<Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(options: AuditLogOptions) {
    this.store = options.store;
    this.log = options.log;
    this.now = options.nowMs ?? Date.now;
    this.adminActorId = options.adminKey === null ? null : `admin_key-${fingerprint(options.adminKey).slice("sha256:".length)}`;
    const limits = options.refusalLimits ?? DEFAULT_REFUSAL_LIMITS;
    this.window = new RefusalWindow(limits, this.now());
    // A window's summary is written when it ends even if no refusal comes after it.
    this.timer = setInterval(() => this.rollWindow(false), Math.min(limits.windowMs, 60_000));
    this.timer.unref();
  }

  /** The actor of a request that passed the admin key check. */
  adminActor(req: Request): AuditActor {
    return { type: "admin_key", id: this.adminActorId ?? "admin_key", ipAddress: remoteAddress(req) };
  }

  /**
   * Records an admin action. A store that cannot write is logged, not thrown:
   * the change it records has already been made and answered for.
   */
  async record(req: Request, res: Response, type: AuditEventType, resourceId: string | null, details: { [key: string]: JsonValue }): Promise<void> {
    const write = this.store.append({
      type,
      effectiveAtMs: this.now(),
      actor: this.adminActor(req),
      resourceId,
      requestId: res.locals.requestId ?? null,
      details,
    });
    await this.track(write).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message, type, resource: resourceId, requestId: res.locals.requestId }, "audit record NOT written");
    });
  }

  /** Records a refused authentication, or counts it when its address (or everyone) is over the window's limit. */
  refused(req: Request, res: Response, refusal: Refusal): void {
    if (this.closed) return;
    this.rollWindow(false);
    const ipAddress = remoteAddress(req);
    if (!this.window.admit(ipAddress)) return;
    const details: { [key: string]: JsonValue } = {
      credential: refusal.credential,
      reason: refusal.reason,
      key_fingerprint: refusal.presented === null ? null : fingerprint(refusal.presented),
      method: req.method,
      path: req.originalUrl.split("?")[0]!.slice(0, 256),
    };
    this.append("authentication.failed", { type: "anonymous", id: `ip:${ipAddress}`, ipAddress }, res.locals.requestId ?? null, details);
  }

  /** Ends the refusal window (its summary written) and waits for every write in flight. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    this.rollWindow(true);
    this.closed = true;
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private rollWindow(force: boolean): void {
    const s = this.window.roll(this.now(), force);
    if (!s) return;
    this.append("authentication.suppressed", { type: "anonymous", id: "ip:*", ipAddress: null }, null, {
      window_start: Math.floor(s.windowStartMs / 1000),
      window_end: Math.floor(s.windowEndMs / 1000),
      recorded: s.recorded,
      suppressed: s.suppressed,
      top_addresses: s.topAddresses.map((a) => ({ ip_address: a.ipAddress, suppressed: a.suppressed })),
      other_suppressed: s.otherSuppressed,
    });
  }

  private append(type: AuditEventType, actor: AuditActor, requestId: string | null, details: { [key: string]: JsonValue }): void {
    this.track(this.store.append({ type, effectiveAtMs: this.now(), actor, resourceId: null, requestId, details })).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message, type }, "audit record NOT written");
    });
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.pending.add(p);
    const done = () => this.pending.delete(p);
    p.then(done, done);
    return p;
  }
}
