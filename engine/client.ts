// The front's handle on the engine worker: forks it, routes requests and step
// deltas, and restarts it when it dies. Runs in the front process, so it must
// never import node-llama-cpp.
//
// Failure contract: when the worker dies, every request in flight ends with
// `engine_restarted`, the client reports not ready, and a new worker is
// started with backoff. Generations arriving meanwhile wait for it (up to
// restartWaitMs), then get `engine_unavailable`; embeddings get it at once.
import { fork, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import { AsyncQueue } from "./asyncQueue.js";
import {
  CrashQuarantine,
  crashReplayable,
  crashSuspects,
  requestFingerprint,
  type CrashQuarantineOptions,
  type InFlightPhase,
  type Quarantined,
} from "./crashQuarantine.js";
import { engineEnv, engineExecArgv } from "./processSettings.js";
import type {
  EmbedRequest,
  EngineErrorPayload,
  EngineRequest,
  EngineStats,
  FinishReason,
  FromWorker,
  ModelInfo,
  TenantPolicy,
  TokenLogprob,
  ToWorker,
  Usage,
  WorkerOptions,
} from "./protocol.js";
import { PROTOCOL_VERSION } from "./protocol.js";

export type EngineEvent =
  | { type: "accepted"; promptTokens: number; promptText: string | null }
  | { type: "delta"; text: string; tokens: number; finish?: FinishReason; usage?: Usage; logprobs?: TokenLogprob[] }
  | { type: "error"; error: EngineErrorPayload };

/**
 * One request's events, and the usage the engine reports when it ends however
 * it ends: finished, or cancelled (the engine still counts what it computed
 * until the cancel took effect). Null when it reports none: refused, never
 * started, or lost with the worker.
 */
export interface RequestEvents extends AsyncIterableIterator<EngineEvent> {
  readonly usage: Promise<Usage | null>;
}

/**
 * Output the front buffers per request before asking the engine to pause it:
 * a client that stops reading costs this much memory per choice, not its
 * whole generation. A token's delta is a few dozen bytes; 16 KiB is hundreds
 * of steps, far more than one scheduling hiccup of a reader that keeps up.
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 16 * 1024;

/** What one event holds, roughly (UTF-16 text, logprob entries, the object). */
export function eventBytes(ev: EngineEvent): number {
  if (ev.type !== "delta") return 256;
  let bytes = 64 + 2 * ev.text.length;
  if (ev.logprobs) for (const e of ev.logprobs) bytes += 96 * (1 + e.top.length);
  return bytes;
}

/** An embeddings request's outcome: unit vectors and token counts per input, in input order, or why there are none. */
export type EmbedOutcome = { vectors: Float32Array[]; promptTokens: number[] } | { error: EngineErrorPayload };

export type EngineState = "starting" | "ready" | "restarting" | "stopping" | "stopped";

export interface EngineClientOptions {
  worker: WorkerOptions;
  /** Called with load progress and lifecycle news, for logging. */
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  restartBackoffMs?: { initial: number; max: number };
  /** The worker script to fork (default: engine/worker.js); tests use a fake one. */
  workerEntry?: string;
  /** Output buffered per request before the engine is asked to pause it (default DEFAULT_MAX_BUFFERED_BYTES). */
  maxBufferedBytes?: number;
  /** Refusing the tenants and requests that keep crashing the worker (crashQuarantine.ts); defaults: DEFAULT_CRASH_QUARANTINE. */
  crashQuarantine?: Partial<CrashQuarantineOptions>;
  /** The clock the quarantine reads (tests); default Date.now. */
  nowMs?: () => number;
  /**
   * How long a generation submitted while the worker restarts waits for it
   * (default 10 s; 0: refused at once). A worker is back in 1-2 s: failing
   * at once made every client that retried within that time fail again.
   */
  restartWaitMs?: number;
}

/** What the front knows of a request in the worker, to blame it if the worker dies. */
interface InFlightMeta {
  tenant: string;
  /** What the request's fingerprint is hashed from (only when it is needed). */
  prompt: unknown;
  phase: InFlightPhase;
  /** A generation, as submitted: what a replay sends again (embeddings have none: they are not replayed). */
  replay: { req: EngineRequest; signal?: AbortSignal } | null;
  /** Sent again after a crash already (crashReplayable). */
  replayed: boolean;
  /** Its `accepted` event has reached the caller: a replay's own is not passed on twice. */
  acceptedSeen: boolean;
}

const WORKER_ENTRY = fileURLToPath(new URL("./worker.js", import.meta.url));

export class EngineClient extends EventEmitter {
  state: EngineState = "starting";
  model: ModelInfo | null = null;
  restarts = 0;
  private child: ChildProcess | null = null;
  private readonly inflight = new Map<string, AsyncQueue<EngineEvent>>();
  /** Embeddings requests sent to the worker, by id (the same id space as `inflight`). */
  private readonly embeds = new Map<string, (outcome: EmbedOutcome) => void>();
  private nextId = 0;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private statsWaiters: Array<(s: EngineStats) => void> = [];
  /** The last policies set: every new worker gets them before its first request. */
  private policies: TenantPolicy[] | null = null;
  /** The last tenants retained (retainTenants): every new worker gets them too. */
  private retained: string[] | null = null;
  /** Requests whose final usage is still to come, cancelled ones included (RequestEvents.usage). */
  private readonly finals = new Map<string, (u: Usage | null) => void>();
  /** Every request in the worker (generations and embeddings) in the order sent, for crash attribution. */
  private readonly meta = new Map<string, InFlightMeta>();
  private readonly quarantine: CrashQuarantine;
  private readonly now: () => number;
  /** Generations to send again once a new worker is ready (crashReplayable), by id. */
  private readonly replays = new Map<string, { acceptedSeen: boolean }>();
  /** Generations waiting for the restarting worker: called with true once it is ready, false when it will not be. */
  private readonly readyWaiters = new Set<(ready: boolean) => void>();

  constructor(private readonly opts: EngineClientOptions) {
    super();
    this.backoffMs = opts.restartBackoffMs?.initial ?? 250;
    this.quarantine = new CrashQuarantine(opts.crashQuarantine);
    this.now = opts.nowMs ?? Date.now;
  }

  /** Starts the worker and resolves once the model is loaded; rejects if it cannot load. */
  start(): Promise<ModelInfo> {
    return new Promise((resolve, reject) => {
      const onReady = (m: ModelInfo) => {
        this.off("fatal", onFatal);
        resolve(m);
      };
      const onFatal = (err: Error) => {
        this.off("ready", onReady);
        reject(err);
      };
      this.once("ready", onReady);
      this.once("fatal", onFatal);
      this.spawn();
    });
  }

  get ready(): boolean {
    return this.state === "ready";
  }

  /** Events for one request: `accepted` or `error` first, then deltas up to the one with `finish`. */
  submit(req: EngineRequest, signal?: AbortSignal): RequestEvents {
    const id = `r${++this.nextId}`;
    // A reader that falls behind pauses its request in the engine, so its
    // output waits in the engine's state (one slot), not in front memory.
    const queue = new AsyncQueue<EngineEvent>({
      highWaterBytes: this.opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
      sizeOf: eventBytes,
      onFull: () => this.send({ t: "pause", id }),
      onDrained: () => this.send({ t: "resume", id }),
    });
    const usage = new Promise<Usage | null>((resolve) => this.finals.set(id, resolve));
    const events = Object.assign(queue, { usage });
    const waitMs = this.opts.restartWaitMs ?? 10_000;
    if (this.state === "restarting" && waitMs > 0 && !signal?.aborted) {
      void this.whenReady(waitMs, signal).then(() => this.enqueue(id, queue, req, signal));
      return events;
    }
    this.enqueue(id, queue, req, signal);
    return events;
  }

  /** Resolves when the worker is ready, or after `timeoutMs`, on stop, or when `signal` aborts, whichever is first. */
  private whenReady(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.readyWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      this.readyWaiters.add(done);
    });
  }

  private enqueue(id: string, queue: AsyncQueue<EngineEvent>, req: EngineRequest, signal?: AbortSignal): void {
    if (signal?.aborted && this.replays.delete(id)) {
      // A replay whose client left while it waited for the new worker.
      this.settleFinal(id, null);
      queue.close();
      return;
    }
    const refused = !this.ready || !this.child ? unavailable(this.state) : this.quarantined(req.tenant, req.prompt);
    if (refused) {
      this.replays.delete(id);
      this.settleFinal(id, null);
      queue.push({ type: "error", error: refused });
      queue.close();
      return;
    }
    this.inflight.set(id, queue);
    const earlier = this.replays.get(id);
    this.replays.delete(id);
    this.meta.set(id, {
      tenant: req.tenant,
      prompt: req.prompt,
      phase: "sent",
      replay: { req, signal },
      replayed: earlier !== undefined,
      acceptedSeen: earlier?.acceptedSeen ?? false,
    });
    this.send({ t: "submit", id, req });
    // A replay keeps the abort listener of its first submit.
    if (signal && earlier === undefined) {
      const onAbort = () => this.cancel(id);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
  }

  /**
   * The tenants that exist (EngineRequest.tenant values): the worker drops
   * the KV cache of every other, in slots and on disk. Survives worker
   * restarts, so a new worker sweeps saved states of tenants deleted meanwhile.
   */
  retainTenants(tenants: readonly string[]): void {
    this.retained = [...tenants];
    if (this.ready) this.send({ t: "retain_tenants", tenants: this.retained });
  }

  /**
   * Replaces the fair scheduler's tenant policies (weights, reserved slots,
   * slot caps); tenants not listed get weight 1, no reservation, no cap. Takes
   * effect at the worker's next step, and survives worker restarts. Throws
   * TypeError on an invalid policy, or reservations beyond the slot count,
   * leaving the previous ones in force. Reservations that add up to all the
   * slots leave tenants without one nothing: keep the sum below `model.slots`.
   */
  setTenantPolicies(policies: readonly TenantPolicy[]): void {
    const checked = validateTenantPolicies(policies);
    const reserved = this.model ? overReserved(checked, this.model.slots) : null;
    if (reserved !== null) throw new TypeError(`tenant policies reserve ${reserved} slots, but the engine has ${this.model!.slots}`);
    this.policies = checked;
    if (this.ready) this.send({ t: "tenants", policies: checked });
  }

  /**
   * Embeds every input of `req` on the worker's embedding context. Resolves
   * with the vectors, or with the engine's error (engine_unavailable when the
   * worker is not ready, engine_restarted when it dies meanwhile, a bad input).
   * Rejects with `signal.reason` when `signal` aborts: the worker drops the
   * request's remaining inputs and nobody waits for them.
   */
  embed(req: EmbedRequest, signal?: AbortSignal): Promise<EmbedOutcome> {
    const refused = !this.ready || !this.child ? unavailable(this.state) : this.quarantined(req.tenant, req.inputs);
    if (refused) return Promise.resolve({ error: refused });
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = `e${++this.nextId}`;
    this.meta.set(id, { tenant: req.tenant, prompt: req.inputs, phase: "sent", replay: null, replayed: false, acceptedSeen: false });
    return new Promise<EmbedOutcome>((resolve, reject) => {
      const onAbort = () => {
        if (!this.embeds.delete(id)) return;
        this.meta.delete(id);
        this.send({ t: "cancel", id });
        reject(signal!.reason);
      };
      this.embeds.set(id, (outcome) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(outcome);
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      this.send({ t: "embed", id, req });
    });
  }

  stats(): Promise<EngineStats | null> {
    if (!this.ready) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.statsWaiters.push(resolve);
      this.send({ t: "stats" });
    });
  }

  /** Asks the worker to exit and waits for it; kills it after `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<void> {
    this.state = "stopping";
    for (const w of [...this.readyWaiters]) w(false);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      this.send({ t: "shutdown" });
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      await exited;
      clearTimeout(timer);
    }
    this.failInflight({ code: "engine_unavailable", param: null, message: "The server is shutting down." });
    this.state = "stopped";
  }

  /** The worker's pid, for tests and diagnostics. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private cancel(id: string): void {
    const queue = this.inflight.get(id);
    if (!queue) return;
    this.inflight.delete(id);
    this.meta.delete(id);
    queue.close();
    this.send({ t: "cancel", id });
  }

  private spawn(): void {
    const child = fork(this.opts.workerEntry ?? WORKER_ENTRY, [], {
      execArgv: engineExecArgv(),
      env: engineEnv(process.env, { LLAMUX_WORKER_OPTIONS: JSON.stringify(this.opts.worker) }),
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.child = child;
    child.on("message", (msg: FromWorker) => this.onMessage(msg));
    child.on("exit", (code, signal) => this.onExit(child, code, signal));
  }

  private onMessage(msg: FromWorker): void {
    switch (msg.t) {
      case "loading":
        this.opts.log?.("loading model", { progress: Math.round(msg.fraction * 100) });
        return;
      case "ready":
        if (msg.v !== PROTOCOL_VERSION) {
          this.emit("fatal", new Error(`engine protocol v${msg.v}, front expects v${PROTOCOL_VERSION}`));
          return;
        }
        this.model = msg.model;
        // Before "ready" is announced, so no request reaches a worker without them.
        if (this.policies) this.send({ t: "tenants", policies: this.policies });
        if (this.retained) this.send({ t: "retain_tenants", tenants: this.retained });
        this.state = "ready";
        this.backoffMs = this.opts.restartBackoffMs?.initial ?? 250;
        this.emit("ready", msg.model);
        for (const w of [...this.readyWaiters]) w(true);
        return;
      case "accepted": {
        const m = this.meta.get(msg.id);
        if (m) m.phase = "accepted";
        if (m?.acceptedSeen) return;
        if (m) m.acceptedSeen = true;
        this.inflight.get(msg.id)?.push({ type: "accepted", promptTokens: msg.promptTokens, promptText: msg.promptText });
        return;
      }
      case "rejected":
        this.settleFinal(msg.id, null);
        this.finish(msg.id, { type: "error", error: msg.error });
        return;
      case "step":
        for (const d of msg.deltas) {
          if (d.finish) this.settleFinal(d.id, d.usage ?? null);
          const event: EngineEvent = {
            type: "delta",
            text: d.text,
            tokens: d.tokens,
            finish: d.finish,
            usage: d.usage,
            ...(d.logprobs ? { logprobs: d.logprobs } : {}),
          };
          if (d.finish) this.finish(d.id, event);
          else {
            const m = this.meta.get(d.id);
            if (m) m.phase = "running";
            this.inflight.get(d.id)?.push(event);
          }
        }
        return;
      case "embedded":
        this.settleEmbed(msg.id, { vectors: msg.vectors, promptTokens: msg.promptTokens });
        return;
      case "embed_failed":
        this.settleEmbed(msg.id, { error: msg.error });
        return;
      case "stats":
        for (const w of this.statsWaiters.splice(0)) w(msg.stats);
        return;
      case "fatal":
        this.opts.log?.("engine worker failed", { error: msg.message });
        if (this.state === "starting") this.emit("fatal", new Error(msg.message));
        return;
    }
  }

  private finish(id: string, event: EngineEvent): void {
    const queue = this.inflight.get(id);
    if (!queue) return;
    this.inflight.delete(id);
    this.meta.delete(id);
    queue.push(event);
    queue.close();
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    this.child = null;
    for (const w of this.statsWaiters.splice(0))
      w({
        running: 0,
        waiting: 0,
        slotsBusy: 0,
        slotsIdle: 0,
        kvCellsUsed: 0,
        steps: 0,
        decodedTokens: 0,
        prefixHits: 0,
        prefilledTokens: 0,
        kv: null,
        loopSeconds: { wait: 0, admit: 0, step: 0, emit: 0 },
      });
    if (this.state === "stopping" || this.state === "stopped") return;
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    if (this.state === "starting" && this.restarts === 0) {
      this.state = "stopped";
      this.emit("fatal", new Error(`engine worker exited during start-up (${how})`));
      return;
    }
    this.blameCrash();
    const replay = this.takeReplays();
    this.opts.log?.("engine worker died; restarting", {
      how,
      inflight: this.inflight.size + replay.length,
      replayed: replay.length,
      backoffMs: this.backoffMs,
    });
    this.failInflight({
      code: "engine_restarted",
      param: null,
      message: `The inference engine stopped unexpectedly (${how}) and is restarting; retry the request.`,
    });
    this.state = "restarting";
    this.restarts++;
    this.emit("restart", this.restarts);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.state === "restarting") this.spawn();
    }, this.backoffMs);
    // Sent again once the new worker is ready, or failed as engine_unavailable
    // (enqueue's refusal) if it is not within the restart wait.
    const waitMs = this.opts.restartWaitMs ?? 10_000;
    for (const r of replay) void this.whenReady(waitMs, r.signal).then(() => this.enqueue(r.id, r.queue, r.req, r.signal));
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.restartBackoffMs?.max ?? 5000);
  }

  private settleEmbed(id: string, outcome: EmbedOutcome): void {
    const settle = this.embeds.get(id);
    if (!settle) return;
    this.embeds.delete(id);
    this.meta.delete(id);
    settle(outcome);
  }

  private settleFinal(id: string, usage: Usage | null): void {
    const settle = this.finals.get(id);
    if (!settle) return;
    this.finals.delete(id);
    settle(usage);
  }

  /** The worker died: strikes for the requests suspected of it (crashQuarantine.ts). */
  private blameCrash(): void {
    const model = this.opts.worker.modelId;
    const suspects = crashSuspects([...this.meta.values()]).map((m) => ({
      tenant: m.tenant,
      phase: m.phase,
      fingerprint: requestFingerprint(model, m.prompt),
    }));
    if (suspects.length === 0) return;
    this.quarantine.recordCrash(suspects, this.now());
    this.opts.log?.("engine crash attributed", { suspects: suspects.map((s) => ({ tenant: s.tenant, phase: s.phase, fingerprint: s.fingerprint })) });
  }

  /**
   * Takes the generations crashReplayable picks out of the books of the dead
   * worker (so failInflight leaves them alone) and returns what enqueue needs
   * to send each again.
   */
  private takeReplays(): Array<{ id: string; queue: AsyncQueue<EngineEvent>; req: EngineRequest; signal?: AbortSignal }> {
    const metas = [...this.meta].map(([id, m]) => ({ id, ...m }));
    const out: Array<{ id: string; queue: AsyncQueue<EngineEvent>; req: EngineRequest; signal?: AbortSignal }> = [];
    for (const m of crashReplayable(metas)) {
      const queue = this.inflight.get(m.id);
      if (!m.replay || !queue || m.replay.signal?.aborted) continue;
      this.inflight.delete(m.id);
      this.meta.delete(m.id);
      this.replays.set(m.id, { acceptedSeen: m.acceptedSeen });
      out.push({ id: m.id, queue, req: m.replay.req, signal: m.replay.signal });
    }
    return out;
  }

  /** engine_crash_quarantine when this tenant or this prompt keeps crashing the worker; null: it may run. */
  private quarantined(tenant: string, prompt: unknown): EngineErrorPayload | null {
    const now = this.now();
    const q: Quarantined | null = this.quarantine.check(tenant, () => requestFingerprint(this.opts.worker.modelId, prompt), now);
    if (!q) return null;
    const seconds = Math.max(1, Math.ceil((q.untilMs - now) / 1000));
    const who = q.kind === "tenant" ? "Requests from your tenant were" : "This request (the same model and prompt) was";
    return {
      code: "engine_crash_quarantine",
      param: null,
      retryAfterSeconds: seconds,
      message:
        `${who} in flight when the inference engine crashed, repeatedly (${q.crashes} times within ${Math.round(this.quarantine.opts.windowMs / 1000)} s); ` +
        `so that other clients keep being served, ${q.kind === "tenant" ? "its" : "this"} requests are refused for ${seconds} more seconds.`,
    };
  }

  private failInflight(error: EngineErrorPayload): void {
    this.meta.clear();
    for (const id of [...this.finals.keys()]) if (!this.replays.has(id)) this.settleFinal(id, null);
    for (const id of [...this.embeds.keys()]) this.settleEmbed(id, { error });
    for (const [id, queue] of this.inflight) {
      this.inflight.delete(id);
      queue.push({ type: "error", error });
      queue.close();
    }
  }

  private send(msg: ToWorker): void {
    const child = this.child;
    if (child?.connected) child.send(msg);
  }
}

/** The slots `policies` reserve in all, when that is more than `slots`; null when they fit. */
export function overReserved(policies: readonly TenantPolicy[], slots: number): number | null {
  const reserved = policies.reduce((n, p) => n + p.reservedSlots, 0);
  return reserved > slots ? reserved : null;
}

export function validateTenantPolicies(policies: readonly TenantPolicy[]): TenantPolicy[] {
  const seen = new Set<string>();
  return policies.map((p) => {
    const where = `tenant policy '${String(p?.id)}'`;
    if (typeof p?.id !== "string" || p.id === "") throw new TypeError("tenant policy: id must be a non-empty string");
    if (seen.has(p.id)) throw new TypeError(`${where}: duplicate id`);
    seen.add(p.id);
    if (typeof p.weight !== "number" || !Number.isFinite(p.weight) || p.weight <= 0) throw new TypeError(`${where}: weight must be a finite number > 0`);
    if (!Number.isSafeInteger(p.reservedSlots) || p.reservedSlots < 0) throw new TypeError(`${where}: reservedSlots must be an integer >= 0`);
    if (p.maxSlots !== null && (!Number.isSafeInteger(p.maxSlots) || p.maxSlots < 1)) throw new TypeError(`${where}: maxSlots must be null or an integer >= 1`);
    return { id: p.id, weight: p.weight, reservedSlots: p.reservedSlots, maxSlots: p.maxSlots };
  });
}

function unavailable(state: EngineState): EngineErrorPayload {
  const why = state === "restarting" ? "is restarting after a failure" : state === "starting" ? "is still loading the model" : "is shutting down";
  return { code: "engine_unavailable", param: null, message: `The inference engine ${why}; retry shortly.` };
}
