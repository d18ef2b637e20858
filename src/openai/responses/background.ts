// Background responses (`background: true`): the request is checked, charged
// and admitted while the client waits, exactly as a foreground one (a 400 or
// a 429 is answered at once and nothing is stored); then the response is
// stored with status queued and answered, and its generation runs on in this
// process, detached from the request: through in_progress (its first output)
// to completed / incomplete / failed, or cancelled. Every transition is
// written to the BackgroundStore before anyone is told of it.
//
// Each run keeps its whole event stream in memory while it runs (live
// readers follow it there, each at its own pace: a slow reader never slows
// the generation) and writes it to the store in batches, so a reader that
// comes later, or after a restart, replays it from any sequence number.
//
// Several replicas on one store (PostgreSQL): see backgroundReplicas.ts.
//
// Quotas: the run holds its QuotaGate reservation (tenant concurrency and
// queue, the server queue, tokens) from creation to its end, as a foreground
// request does for its life; a background response is never shed by
// --queue-timeout-ms (waiting is what it is for).
import type { Response } from "express";
import { refuseEarly, type EngineRequest, type Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import type { Logger } from "../../logger.js";
import { SseWriter } from "../../sse.js";
import type { BackgroundStatus, BackgroundStore, InterruptedOutcome, StoredEvent } from "../../store/backgroundStore.js";
import type { Item, JsonObject } from "../../store/conversationStore.js";
import type { ServedModel } from "../../servedModels.js";
import { engineTenant, type Tenant } from "../../tenants/types.js";
import { logUsage, recordUsage, usageSubject, type RouteDeps, type UsageSubject } from "../context.js";
import { firstOutput } from "../firstOutput.js";
import { admitAll, type Admitted } from "../generation.js";
import { boundTokens, chargeRefusedRequest, QuotaGate, type GenerationMeta } from "../runGeneration.js";
import { responseJson, type ResponseObject } from "./responseObject.js";
import { failedBody, generateEvents, type GenerationOutcome, type ResponseRun } from "./serving.js";
import { LiveRun } from "./liveRun.js";
import { CANCEL_WAIT_MS, FOLLOW_POLL_MS, isUnfinished, orphans, OWNER_POLL_MS, ownerStops, sleep, SWEEP_MS } from "./backgroundReplicas.js";
import { END_NOT_STORED_MESSAGE, failedWith } from "./interrupted.js";

/** How often a running response's new events are written (one transaction each). */
export const EVENT_FLUSH_MS = 100;

/** Why a run was stopped from outside. */
type StopReason = "cancelled" | "deleted" | "shutdown" | "store_failed";

export const SHUTDOWN_MESSAGE = "The server shut down before this background response finished; it was not completed. Create it again.";

export interface BackgroundRequest {
  tenant: Tenant;
  served: ServedModel;
  engineReq: EngineRequest;
  /** The pre-flight token estimate (QuotaGate.open). */
  estimate: () => number;
  /** Its echo has background: true and store: true; `commit` is not used. */
  run: ResponseRun;
  /** Every item the generation reads (stored as the response's input items). */
  context: readonly Item[];
  /** The conversation it continues, and this request's own input items (appended with the output when it finishes). */
  conversation: { id: string; input: readonly Item[] } | null;
}

export class BackgroundResponses {
  private readonly live = new Map<string, LiveRun>();
  private readonly timers: NodeJS.Timeout[] = [];
  private polling = false;
  private pollFailing = false;
  private sweeping = false;

  /**
   * `store` null: the server's store keeps no background responses, and `background: true` is a 400 naming it.
   * A shared store (several replicas): `interrupted` is what the periodic sweep makes of a dead replica's responses.
   */
  constructor(
    private readonly backgroundStore: BackgroundStore | null,
    private readonly log: Logger | null = null,
    private readonly interrupted: InterruptedOutcome | null = null,
  ) {
    if (backgroundStore?.shared) {
      this.timers.push(setInterval(() => void this.pollOwned(), OWNER_POLL_MS));
      if (interrupted) this.timers.push(setInterval(() => void this.sweep(), SWEEP_MS));
      for (const t of this.timers) t.unref();
    }
  }

  /** Stops the runs of this replica that another one cancelled or deleted (shared store). */
  private async pollOwned(): Promise<void> {
    const shared = this.backgroundStore?.shared;
    if (!shared || this.polling || this.live.size === 0) return;
    this.polling = true;
    try {
      const runs = [...this.live.values()].map((r) => ({ tenantId: r.tenantId, id: r.id, stored: r.stored, stopping: r.abort.signal.aborted }));
      for (const stop of ownerStops(runs, await shared.owned())) {
        const run = this.live.get(key(stop.tenantId, stop.id));
        if (run && !run.abort.signal.aborted) run.abort.abort(stop.reason satisfies StopReason);
      }
      this.pollFailing = false;
    } catch (err) {
      // The next poll tries again (said once per outage); a run's own writes find out as well.
      if (!this.pollFailing) this.log?.warn({ err }, "cannot poll this replica's background responses for cancels and deletes made elsewhere");
      this.pollFailing = true;
    } finally {
      this.polling = false;
    }
  }

  /** Fails dead replicas' unfinished responses, and this one's that nothing here runs any more (their end could not be stored). */
  private async sweep(): Promise<void> {
    const shared = this.backgroundStore?.shared;
    if (!this.backgroundStore || !shared || !this.interrupted || this.sweeping) return;
    this.sweeping = true;
    try {
      const failed = await this.backgroundStore.failUnfinished(this.interrupted);
      if (failed > 0) this.log?.warn({ failed }, "background responses of a replica that is gone (its lease expired) are marked failed");
      // The live runs are read after owned(): a run created meanwhile is not taken for an orphan.
      const owned = await shared.owned();
      for (const o of orphans(new Set(this.live.keys()), owned)) {
        if (await shared.failOwned(o.tenantId, o.id, failedWith(END_NOT_STORED_MESSAGE)))
          this.log?.warn({ response: o.id }, "a background response whose end could not be stored is marked failed");
      }
    } catch (err) {
      this.log?.debug({ err }, "sweeping background responses of gone replicas failed");
    } finally {
      this.sweeping = false;
    }
  }

  private get store(): BackgroundStore {
    if (!this.backgroundStore)
      throw new ApiError("unsupported_parameter", "Unsupported parameter: 'background': this server's store does not keep background responses.", "background");
    return this.backgroundStore;
  }

  /**
   * Checks, charges and admits the request (throwing its 400 or 429 as a
   * foreground request would), stores it queued and starts its generation.
   * Returns the queued Response object and the run.
   */
  async start(deps: RouteDeps, res: Response, r: BackgroundRequest): Promise<{ body: ResponseObject; run: LiveRun }> {
    const { tenant, served } = r;
    // Without a store, refused before anything is charged.
    const store = this.store;
    res.locals.model = r.run.echo.model; // for the access log, as runGeneration does
    const engineReq = { ...r.engineReq, tenant: engineTenant(tenant) };
    const info = served.engine.model;
    const early = info ? refuseEarly(engineReq, info) : null;
    if (early) {
      // As a foreground request refused here: one request unit, no tokens.
      await chargeRefusedRequest(deps, tenant, res);
      throw fromEngineError(early);
    }
    const gate = await QuotaGate.open(deps.quota, served.queue, deps.metrics, tenant, res, r.estimate);
    const live = new LiveRun(tenant.id, r.run.echo.id);
    let admitted: Admitted;
    try {
      try {
        [admitted] = (await admitAll(served.engine, [engineReq], live.abort)) as [Admitted];
      } catch (err) {
        if (err instanceof ApiError && err.status === 400) gate.refusedAsInvalid();
        throw err;
      }
      gate.track([{ usage: admitted.usage ?? Promise.resolve(null), billsPrompt: true }]);
      await gate.confirm(boundTokens([engineReq], [admitted.promptTokens], info?.contextPerSlot ?? 0));
      const queued = responseJson(r.run.echo, { status: "queued", output: [], usage: null, error: null, completedAtSeconds: null });
      const events = [live.push("response.created", { response: queued }), live.push("response.queued", { response: queued })];
      // Registered first: a cancel that arrives while the row is written finds the run.
      this.live.set(key(tenant.id, queued.id), live);
      try {
        await store.create(tenant.id, { id: queued.id, createdAtSeconds: queued.created_at, body: queued, inputItems: r.context }, events);
        live.stored = true;
      } catch (err) {
        this.live.delete(key(tenant.id, queued.id));
        live.markEnded();
        throw err;
      }
      void this.run(deps, r, live, admitted, gate, usageSubject(res)).finally(() => {
        this.live.delete(key(tenant.id, queued.id));
        live.markEnded();
      });
      return { body: queued, run: live };
    } catch (err) {
      live.abort.abort();
      void gate.close().catch(() => undefined);
      throw err;
    }
  }

  /** The generation, detached from the request that created it. Never throws. */
  private async run(deps: RouteDeps, r: BackgroundRequest, live: LiveRun, admitted: Admitted, gate: QuotaGate, who: UsageSubject): Promise<void> {
    const { tenant } = r;
    const model = r.run.echo.model;
    const ended = (status: "ok" | "error" | "cancelled", finishReason = "none") =>
      deps.metrics.generations.inc({ model, tenant: tenant.id, status, finish_reason: finishReason });
    let flushTimer: NodeJS.Timeout | null = null;
    // One write at a time, in order: with a networked store, a later batch (or
    // the end) committing before an earlier one would leave a gap in the log.
    let writes: Promise<void> = Promise.resolve();
    const flush = (change: { body?: JsonObject; status?: "in_progress" } = {}): Promise<void> => {
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      const events = live.pending;
      live.pending = [];
      writes = writes.then(async () => {
        try {
          // False: the response was deleted (or its tenant): stop.
          if (!(await this.store.update(tenant.id, live.id, { events, ...change }))) live.abort.abort("deleted" satisfies StopReason);
        } catch (err) {
          // Its log would have a gap: stop it (it ends failed, if the store takes that).
          this.log?.error({ err, response: live.id }, "writing a background response's events failed");
          live.abort.abort("store_failed" satisfies StopReason);
        }
      });
      return writes;
    };
    const send = async (type: string, fields: object) => {
      live.pending.push(live.push(type, fields));
      flushTimer ??= setTimeout(() => void flush(), EVENT_FLUSH_MS);
    };
    let outcome: GenerationOutcome;
    try {
      const started = (await firstOutput([admitted], 0))![0]!;
      if (live.abort.signal.aborted) {
        outcome = { kind: "cut", output: [] };
      } else {
        gate.started();
        const inProgress = responseJson(r.run.echo, { status: "in_progress", output: [], usage: null, error: null, completedAtSeconds: null });
        live.pending.push(live.push("response.in_progress", { response: inProgress }));
        await flush({ body: inProgress, status: "in_progress" });
        const meta: GenerationMeta = {
          model,
          fingerprint: deps.fingerprint,
          includeUsage: false,
          onUsage: (u: Usage) => {
            recordUsage(deps, model, tenant.id, u);
            return Promise.all([gate.settle(u), logUsage(deps, who, r.served, "completions", u)]).then(() => undefined);
          },
        };
        outcome = await generateEvents(started, meta, r.run, send);
      }
    } catch (err) {
      outcome = { kind: "failed", error: err, output: [] };
    } finally {
      if (flushTimer) clearTimeout(flushTimer);
      // However it ended, the engine has nothing left to do for it.
      live.abort.abort(live.abort.signal.reason ?? "ended");
      void gate.close().catch(() => undefined);
    }
    try {
      // The batches before the end are written first.
      await writes;
      await this.end(r, live, outcome);
      if (outcome.kind === "finished") ended("ok", outcome.body.status === "completed" ? "stop" : "length");
      else ended(outcome.kind === "cut" && live.abort.signal.reason !== "shutdown" ? "cancelled" : "error");
    } catch (err) {
      this.log?.error({ err, response: live.id }, "storing a background response's end failed");
    } finally {
      live.finish();
    }
  }

  /** Writes the terminal state (the terminal event last), then tells the readers. */
  private async end(r: BackgroundRequest, live: LiveRun, outcome: GenerationOutcome): Promise<void> {
    const reason = live.abort.signal.reason as StopReason | undefined;
    if (outcome.kind === "cut" && reason === "deleted") return;
    let body: ResponseObject;
    let terminal: { type: string; fields: object } | null;
    if (outcome.kind === "finished") {
      body = outcome.body;
      terminal = { type: body.status === "completed" ? "response.completed" : "response.incomplete", fields: { response: body } };
    } else if (outcome.kind === "cut" && reason === "cancelled") {
      // OpenAI's stream has no cancelled event: it ends; the object says cancelled.
      body = responseJson(r.run.echo, { status: "cancelled", output: outcome.output, usage: null, error: null, completedAtSeconds: null });
      terminal = null;
    } else {
      const error =
        outcome.kind === "failed"
          ? outcome.error
          : new ApiError("engine_error", reason === "shutdown" ? SHUTDOWN_MESSAGE : "The generation was stopped before it finished.");
      if (outcome.kind === "failed" && !(outcome.error instanceof ApiError))
        this.log?.error({ err: outcome.error, response: live.id }, "background response failed");
      body = failedBody(r.run, outcome.output, error);
      terminal = { type: "response.failed", fields: { response: body } };
    }
    // Assigned now, published only once stored: what a reader is told is final is durable.
    const sequenceNumber = live.log.length;
    const last: StoredEvent[] = terminal
      ? [{ sequenceNumber, type: terminal.type, data: { type: terminal.type, ...terminal.fields, sequence_number: sequenceNumber } as JsonObject }]
      : [];
    const finished = outcome.kind === "finished";
    const stored = await this.store.finish({
      tenantId: live.tenantId,
      id: live.id,
      status: body.status as "completed" | "incomplete" | "failed" | "cancelled",
      body,
      events: [...live.pending, ...last],
      outputItems: finished ? outcome.output : [],
      conversation: finished && r.conversation ? { id: r.conversation.id, items: [...r.conversation.input, ...outcome.output] } : null,
    });
    live.pending = [];
    if (stored && terminal) live.push(terminal.type, terminal.fields);
  }

  /** The status of a background response; null when the store has none of that id (not background, or another tenant's). */
  async status(tenantId: string, id: string): Promise<BackgroundStatus | null> {
    return this.backgroundStore ? this.backgroundStore.status(tenantId, id) : null;
  }

  /**
   * Cancels a queued or running response of this process and returns its
   * final object (cancelled, or whatever it ended as first); a response
   * already terminal is returned as it is (OpenAI: cancelling is idempotent).
   * Returns null when the store has no background response of that id.
   */
  async cancel(tenantId: string, id: string, current: () => Promise<JsonObject | null>): Promise<JsonObject | null> {
    const live = this.live.get(key(tenantId, id));
    if (live) {
      if (!live.abort.signal.aborted) live.abort.abort("cancelled" satisfies StopReason);
      await live.ended;
      return current();
    }
    const body = await current();
    if (body && (body.status === "queued" || body.status === "in_progress")) {
      // Running on another replica: it stops at its next poll and stores the
      // response cancelled, with the output it had; wait for that, a bounded time.
      const shared = this.store.shared;
      if (shared && (await shared.ownerAlive(tenantId, id)) && (await shared.requestCancel(tenantId, id))) {
        const deadline = Date.now() + CANCEL_WAIT_MS;
        while (Date.now() < deadline) {
          if (!isUnfinished(await this.store.status(tenantId, id))) return current();
          await sleep(FOLLOW_POLL_MS);
        }
        this.log?.warn({ response: id }, "the replica running a cancelled background response did not stop it in time: stored cancelled here");
      }
      // Its owner is gone or silent: the object says cancelled, and the owner's next write (if any) finds it terminal and stops.
      const cancelled = { ...body, status: "cancelled" } as JsonObject;
      if (await this.store.finish({ tenantId, id, status: "cancelled", body: cancelled, events: [], outputItems: [], conversation: null })) return cancelled;
      return current();
    }
    return body;
  }

  /** The response was deleted: stop its generation (nothing more is written). */
  abandon(tenantId: string, id: string): void {
    const live = this.live.get(key(tenantId, id));
    if (live && !live.abort.signal.aborted) live.abort.abort("deleted" satisfies StopReason);
  }

  /**
   * Streams a background response's events after sequence number `after` to
   * `res`: live while it runs in this process (from memory), else replayed
   * from the store. The generation never waits for the reader, and a reader
   * that leaves changes nothing for the response.
   */
  async stream(res: Response, tenantId: string, id: string, after: number, live: LiveRun | null = this.live.get(key(tenantId, id)) ?? null): Promise<void> {
    const sse = new SseWriter(res);
    const closed = new Promise<void>((resolve) => res.once("close", () => resolve()));
    sse.open();
    try {
      if (live) {
        let next = Math.max(0, after + 1);
        while (!sse.isClosed) {
          while (next < live.log.length && !sse.isClosed) {
            const event = live.log[next++]!;
            await sse.sendEvent(event.type as string, event);
          }
          if (live.done) break;
          await Promise.race([live.next(), closed]);
        }
        return;
      }
      // Not running here: the stored log, followed while another replica runs it.
      let last = after;
      while (!sse.isClosed) {
        // Read before the events: once it is terminal, every event is stored.
        const status = await this.store.status(tenantId, id);
        for (const event of await this.store.events(tenantId, id, last)) {
          if (sse.isClosed) return;
          await sse.sendEvent(event.type, event.data);
          last = event.sequenceNumber;
        }
        if (!this.store.shared || !isUnfinished(status)) return;
        await Promise.race([sleep(FOLLOW_POLL_MS), closed]);
      }
    } finally {
      sse.end();
    }
  }

  /**
   * Stops every run (each is stored failed: the server shut down), waits until
   * they are written, then closes the store (a shared one gives its lease up,
   * so the other replicas fail at once whatever could not be written). Idempotent.
   */
  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    const runs = [...this.live.values()];
    for (const run of runs) if (!run.abort.signal.aborted) run.abort.abort("shutdown" satisfies StopReason);
    await Promise.all(runs.map((run) => run.ended));
    await this.backgroundStore?.close();
  }
}

function key(tenantId: string, id: string): string {
  return `${tenantId}\u0000${id}`;
}
