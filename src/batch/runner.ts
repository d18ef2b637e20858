// Runs batches: validates the input, serves each line through dispatch (the
// ordinary route, in the engine's batch class), records each finished line
// durably before it counts, and writes the output and error files at
// finalize from the records. A restarted server resumes every batch not in a
// final state: recorded lines are skipped, the others run (a line cut short
// by the crash runs again, and only one record of it can exist).
//
// At most `concurrency` lines are in flight over all batches; a line waiting
// for one of those places queues behind the others in arrival order, and
// each batch asks for one place at a time, so concurrent batches (and their
// tenants) take turns.
//
// Where replicas share the store (batches.shared: PostgreSQL), a batch runs
// only under its lease: claimed before its work starts, renewed every renewMs
// with everything this runner holds, released when the work ends or the
// runner stops. The renewal also says each held batch's status, so a cancel
// made through another replica cuts the lines here; a batch whose lease
// another replica took over (this one was cut off for longer than the lease)
// is halted where it is, with nothing more written. On the same tick the
// runner takes over the unfinished batches nobody holds (their replica died,
// or stopped) and resumes them from the records.
import readline from "node:readline";
import type { Logger } from "../logger.js";
import { nowSeconds } from "../openai/common.js";
import type { FileStore } from "../files/fileStore.js";
import { FINAL_BATCH_STATUSES, type BatchEndpoint, type BatchObject, type BatchStore } from "./batchStore.js";
import type { DispatchResult } from "./dispatch.js";
import { lineOutcome, unrunRecord } from "./lineOutcome.js";
import { parseLine, validateInput } from "./validate.js";

export interface BatchRunnerOptions {
  batches: BatchStore;
  files: FileStore;
  /** `batchId` names the batch in the line's usage record. */
  dispatch: (tenantId: string, endpoint: BatchEndpoint, body: unknown, signal: AbortSignal, batchId: string) => Promise<DispatchResult>;
  /** Lines in flight at once, over all batches. */
  concurrency: number;
  log: Logger;
}

interface Task {
  abort: AbortController;
  done: Promise<void>;
  /** Its lease is held (shared store): renewed from now on. */
  claimed: boolean;
  /** Another replica holds it now: stop where it is, write nothing more. */
  lost: boolean;
}

class Places {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  async take(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return false;
    if (this.free > 0) {
      this.free--;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(grant);
    });
  }
  give(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

export class BatchRunner {
  private readonly tasks = new Map<string, Task>();
  private readonly places: Places;
  private stopping = false;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;

  constructor(private readonly o: BatchRunnerOptions) {
    this.places = new Places(Math.max(1, o.concurrency));
  }

  /** Resumes every batch a previous run left unfinished. */
  async start(): Promise<void> {
    const shared = this.o.batches.shared;
    if (!shared) {
      for (const { tenantId, batch } of await this.o.batches.unfinished()) this.run(tenantId, batch.id);
      return;
    }
    await this.tick();
    this.timer = setInterval(() => void this.tick(), shared.renewMs);
    this.timer.unref();
  }

  /** Starts (or keeps running) the batch's work; with a shared store, only if its lease can be claimed. */
  run(tenantId: string, batchId: string): void {
    if (this.stopping || this.tasks.has(batchId)) return;
    const task: Task = { abort: new AbortController(), done: Promise.resolve(), claimed: false, lost: false };
    const shared = this.o.batches.shared;
    task.done = (async () => {
      if (shared) {
        // Another replica runs it (a cancel through this one lands here too): its holder sees the status at its next renewal.
        if (!(await shared.claim(tenantId, batchId))) return;
        task.claimed = true;
      }
      try {
        await this.work(tenantId, batchId, task.abort.signal, () => this.stopping || task.lost);
      } finally {
        if (shared && !task.lost)
          await shared.release(batchId).catch((err: unknown) => this.o.log.warn({ err, batch: batchId }, "releasing a batch's lease failed; it expires"));
      }
    })()
      .catch((err: unknown) => this.o.log.error({ err, batch: batchId }, "batch run failed"))
      .finally(() => this.tasks.delete(batchId));
    this.tasks.set(batchId, task);
  }

  /** Renews the leases held, acts on what the renewal says, and takes over the batches nobody holds. One at a time. */
  private async tick(): Promise<void> {
    const shared = this.o.batches.shared;
    if (!shared || this.stopping || this.ticking) return;
    this.ticking = (async () => {
      try {
        const held = [...this.tasks].filter(([, t]) => t.claimed).map(([id]) => id);
        const live = await shared.renew(held);
        for (const id of held) {
          const task = this.tasks.get(id);
          if (!task) continue;
          const status = live.get(id);
          if (status === undefined) {
            this.o.log.warn({ batch: id, replica: shared.replicaId }, "another replica took this batch over (its lease expired here): stopping it here");
            task.lost = true;
            task.abort.abort();
          } else if (status === "cancelling") task.abort.abort();
        }
        for (const { tenantId, batch } of await shared.claimable()) {
          if (this.stopping || this.tasks.has(batch.id)) continue;
          this.o.log.info({ batch: batch.id, status: batch.status, replica: shared.replicaId }, "taking over a batch no live replica holds");
          this.run(tenantId, batch.id);
        }
      } catch (err) {
        this.o.log.warn({ err }, "renewing batch leases failed; retrying");
      }
    })().finally(() => (this.ticking = null));
    await this.ticking;
  }

  /** The batch was marked cancelling: its lines in flight are cut, and it finalizes as cancelled. */
  cancel(batchId: string): void {
    this.tasks.get(batchId)?.abort.abort();
  }

  /** Stops every batch where it is (lines in flight are cut, unrecorded): a restart resumes them. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    await this.ticking;
    const tasks = [...this.tasks.values()];
    for (const t of tasks) t.abort.abort();
    await Promise.all(tasks.map((t) => t.done));
  }

  private async work(tenantId: string, id: string, signal: AbortSignal, halted: () => boolean): Promise<void> {
    const { batches } = this.o;
    let batch = await batches.get(tenantId, id);
    if (!batch) return;
    if (batch.status === "validating") {
      const input = await this.o.files.open(tenantId, batch.input_file_id);
      if (!input) {
        await this.fail(tenantId, id, [{ code: "invalid_file", message: "The input file no longer exists.", param: "input_file_id", line: null }]);
        return;
      }
      const v = await validateInput(input, batch.endpoint, signal);
      if (halted()) return;
      if (signal.aborted) {
        const now = await batches.get(tenantId, id);
        if (now?.status === "cancelling") await this.finalize(tenantId, now);
        return;
      }
      if (v.errors.length > 0) {
        await this.fail(tenantId, id, v.errors);
        return;
      }
      batch = await batches.update(tenantId, id, (b) =>
        b.status !== "validating"
          ? null
          : { ...b, status: "in_progress", in_progress_at: nowSeconds(), model: v.model, request_counts: { total: v.total, completed: 0, failed: 0 } },
      );
      if (!batch) return;
    }
    if (batch.status === "in_progress") {
      // A line whose outcome could not be recorded (the database was away) has no record: it runs again before the batch may finalize.
      for (let unrecorded = await this.runLines(tenantId, batch, signal); unrecorded > 0 && !signal.aborted && !halted() && nowSeconds() < batch.expires_at; ) {
        this.o.log.warn({ batch: id, unrecorded }, "batch lines could not be recorded; running them again");
        await sleep(1000, signal);
        unrecorded = await this.runLines(tenantId, batch, signal);
      }
      if (halted()) return;
      const expired = nowSeconds() >= batch.expires_at;
      batch = await batches.update(tenantId, id, (b) =>
        b.status === "in_progress" ? { ...b, status: "finalizing", finalizing_at: nowSeconds() } : b.status === "cancelling" ? b : null,
      );
      if (!batch) return;
      if (expired && batch.status === "finalizing") await this.expireRest(tenantId, batch);
    }
    if (batch.status === "finalizing" || batch.status === "cancelling") await this.finalize(tenantId, batch);
  }

  private async fail(
    tenantId: string,
    id: string,
    errors: BatchObject["errors"] extends infer E ? (E extends { data: infer D } ? D : never) : never,
  ): Promise<void> {
    await this.o.batches.update(tenantId, id, (b) =>
      b.status !== "validating" ? null : { ...b, status: "failed", failed_at: nowSeconds(), errors: { object: "list", data: errors } },
    );
  }

  /**
   * Serves every line not yet recorded, until all are, or the batch is cancelled, expires or the runner stops.
   * Returns how many lines ended without a record because storing failed.
   */
  private async runLines(tenantId: string, batch: BatchObject, signal: AbortSignal): Promise<number> {
    const done = await this.o.batches.doneLines(batch.id);
    // A crash between a line's record and its count: the records are the truth.
    const t = await this.o.batches.totals(batch.id);
    await this.o.batches.update(tenantId, batch.id, (b) => ({ ...b, request_counts: { ...b.request_counts, completed: t.completed, failed: t.failed } }));
    const input = await this.o.files.open(tenantId, batch.input_file_id);
    if (!input) return 0;
    let unrecorded = 0;
    const expiry = AbortSignal.timeout(Math.max(0, batch.expires_at * 1000 - Date.now()));
    const stop = AbortSignal.any([signal, expiry]);
    const inflight = new Set<Promise<void>>();
    const lines = readline.createInterface({ input, crlfDelay: Infinity });
    let n = 0;
    try {
      for await (const text of lines) {
        n++;
        if (done.has(n)) continue;
        if (!(await this.places.take(stop))) break;
        const line = n;
        const p = this.serveLine(tenantId, batch, line, text, stop)
          .then(async (recorded) => {
            if (recorded === null) return;
            // Exact: recordLine says true once per line, ever.
            await this.o.batches.update(tenantId, batch.id, (b) => ({
              ...b,
              request_counts: {
                ...b.request_counts,
                completed: b.request_counts.completed + (recorded ? 1 : 0),
                failed: b.request_counts.failed + (recorded ? 0 : 1),
              },
            }));
          })
          .catch((err: unknown) => {
            unrecorded++;
            this.o.log.error({ err, batch: batch.id, line }, "batch line failed");
          })
          .finally(() => {
            this.places.give();
            inflight.delete(p);
          });
        inflight.add(p);
      }
    } finally {
      lines.close();
      input.destroy();
      await Promise.all(inflight);
    }
    return unrecorded;
  }

  /** Serves one line until it has an outcome and records it: whether it succeeded; null when it was cut short or recorded before. */
  private async serveLine(tenantId: string, batch: BatchObject, line: number, text: string, stop: AbortSignal): Promise<boolean | null> {
    const parsed = parseLine(text, batch.endpoint);
    // Validated before the batch started: a line that fails now was changed on disk under us.
    if (!("customId" in parsed)) return null;
    for (let attempt = 0; !stop.aborted; attempt++) {
      let outcome: ReturnType<typeof lineOutcome>;
      try {
        outcome = lineOutcome(parsed.customId, await this.o.dispatch(tenantId, batch.endpoint, parsed.body, stop, batch.id), attempt);
      } catch {
        if (stop.aborted) return null;
        // No answer at all (the listener is closing): try again shortly.
        outcome = { kind: "retry" as const, afterMs: 500 };
      }
      if (outcome.kind === "retry") {
        await sleep(outcome.afterMs, stop);
        continue;
      }
      // Recorded before it counts: a second record of this line (a resumed run) is ignored.
      const fresh = await this.o.batches.recordLine(batch.id, {
        line,
        ok: outcome.ok,
        record: outcome.record,
        inputTokens: outcome.inputTokens,
        cachedTokens: outcome.cachedTokens,
        outputTokens: outcome.outputTokens,
      });
      return fresh ? outcome.ok : null;
    }
    return null;
  }

  /** The batch expired: every line not recorded gets a batch_expired error record. */
  private async expireRest(tenantId: string, batch: BatchObject): Promise<void> {
    const done = await this.o.batches.doneLines(batch.id);
    const input = await this.o.files.open(tenantId, batch.input_file_id);
    if (!input) return;
    const lines = readline.createInterface({ input, crlfDelay: Infinity });
    let n = 0;
    for await (const text of lines) {
      n++;
      if (done.has(n)) continue;
      const parsed = parseLine(text, batch.endpoint);
      const customId = "customId" in parsed ? parsed.customId : "";
      await this.o.batches.recordLine(batch.id, {
        line: n,
        ok: false,
        record: unrunRecord(customId, "batch_expired", "This request could not be executed before the completion window expired."),
        inputTokens: 0,
        cachedTokens: 0,
        outputTokens: 0,
      });
    }
    await this.o.batches.update(tenantId, batch.id, (b) => ({ ...b, expired_at: nowSeconds() }));
  }

  /** Writes the output and error files from the recorded lines and ends the batch. */
  private async finalize(tenantId: string, batch: BatchObject): Promise<void> {
    const t = await this.o.batches.totals(batch.id);
    const output =
      t.completed > 0
        ? await this.o.files.write(tenantId, { filename: `${batch.id}_output.jsonl`, purpose: "batch_output" }, this.o.batches.results(batch.id, true))
        : null;
    const errors =
      t.failed > 0
        ? await this.o.files.write(tenantId, { filename: `${batch.id}_error.jsonl`, purpose: "batch_output" }, this.o.batches.results(batch.id, false))
        : null;
    const now = nowSeconds();
    const ended = await this.o.batches.update(tenantId, batch.id, (b) => {
      // Ended already: by a replica that took the batch over from this one while it was cut off.
      if (FINAL_BATCH_STATUSES.has(b.status)) return null;
      const end =
        b.status === "cancelling"
          ? { status: "cancelled" as const, cancelled_at: now }
          : b.expired_at !== null
            ? { status: "expired" as const }
            : { status: "completed" as const, completed_at: now };
      return {
        ...b,
        ...end,
        output_file_id: output?.id ?? null,
        error_file_id: errors?.id ?? null,
        request_counts: { total: b.request_counts.total, completed: t.completed, failed: t.failed },
        usage: {
          input_tokens: t.inputTokens,
          input_tokens_details: { cached_tokens: t.cachedTokens },
          output_tokens: t.outputTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: t.inputTokens + t.outputTokens,
        },
      };
    });
    // The files this run wrote are not the batch's: gone, not orphaned.
    for (const f of [output, errors]) {
      if (f && ended && ended.output_file_id !== f.id && ended.error_file_id !== f.id) await this.o.files.delete(tenantId, f.id);
    }
  }
}
