// The engine: a fixed pool of slots (sequences), and a single step loop that
// advances every running request in one decode. It plans each step with
// planStep (scheduler.ts), a pure function, and carries the plan out on its
// sequences through the narrow interface of sequence.ts: llama.cpp behind
// node-llama-cpp in production (llamaSequence.ts, engine.ts), a fake in the
// unit tests.
//
// node-llama-cpp merges all evaluations queued on a context before its next
// dispatch into one llama_decode. Each step therefore starts every slot's
// evaluation synchronously in the same tick and awaits them together; a
// per-request loop would let requests drift apart and split the batch.
import type { Token } from "node-llama-cpp";
import { acceptToken, endsTurn, finalDelta, finishReason, isFinished, takeLogprobs, type Job, type Slot } from "./job.js";
import type { TokenWithLogprobs } from "./logprobs.js";
import type { Delta, EngineErrorPayload, EngineRequest, EngineStats, FairnessCosts, FromWorker, LoopPhase, TenantPolicy } from "./protocol.js";
import { ForkGroups } from "./forkGroups.js";
import { chargeSampling, DEFAULT_SAMPLE_BUDGET, SlowGrammars, slowSamplingError, type SampleBudget } from "./sampleBudget.js";
import { SAMPLE_FAILED } from "./samplingGuard.js";
import { planStep, servedTokens, type Admission, type StepPlan } from "./scheduler.js";
import type { SavedStates, SequenceRuntime } from "./sequence.js";
import { TenantLedger } from "./tenantLedger.js";

export interface EngineOptions {
  slots: number;
  contextPerSlot: number;
  stepTokens: number;
  /**
   * When nothing is decoding, how long a newly arrived request waits for
   * others before the step starts, so a burst of arrivals is read in one
   * batch instead of being split into several small, less efficient ones.
   */
  coalesceMs: number;
  /**
   * After a step in which a tenant's last request ended, how long the next
   * step waits for that tenant's next request (woken early by any arrival).
   * A client in a loop (a chat turn, an agent) sends it at once; a step begun
   * without it would make it wait for a whole step of everyone else's
   * decodes, which is what made a light tenant's time to first token twice
   * its time alone next to a heavy one. 0: never wait.
   */
  followUpMs: number;
  /** Prices of the fair scheduler's virtual tokens. */
  costs: FairnessCosts;
  /** Most batch-class requests running at once (absent: every slot). */
  maxBatchSlots?: number;
  /** How long a job's own sampling may hold a step (SampleBudget; defaults: DEFAULT_SAMPLE_BUDGET). */
  sampleBudget?: SampleBudget;
}

export type Emit = (msg: FromWorker) => void;

export class EngineCore {
  private readonly slots: Slot[];
  private readonly waiting: Job[] = [];
  private readonly running = new Map<string, Job>();
  private readonly jobs = new Map<string, Job>();
  private readonly eogSet: ReadonlySet<Token>;
  private loop: Promise<void> | null = null;
  private stopping = false;
  /** Nothing can be admitted or run until a request, a cancel or a policy change arrives. */
  private stalled = false;
  /** wake() was called while the loop ran: it looks again before it stalls for good. */
  private wokenWhileRunning = false;
  private readonly ledger: TenantLedger;
  private clock = 0;
  private steps = 0;
  private decodedTokens = 0;
  private prefixHits = 0;
  private prefilledTokens = 0;
  /** Milliseconds the loop spent in each phase (EngineStats.loopSeconds). */
  private readonly phaseMs: Record<LoopPhase, number> = { wait: 0, admit: 0, step: 0, emit: 0 };
  /** A tenant went idle in the last step: the next one waits up to followUpMs for its next request. */
  private awaitFollowUp = false;
  /** Resolves the follow-up wait early when a request arrives. */
  private onArrival: (() => void) | null = null;
  /** n > 1 choices: who leads each group, who may copy its prompt state. */
  private readonly forks = new ForkGroups();
  /** Running requests whose reader is behind (pause()): not stepped until resume(). */
  private readonly paused = new Set<string>();
  /** Waiting for the end of the next step (nextTurn()). */
  private turnWaiters: Array<() => void> = [];
  /** The tenants that exist (retainTenants()); null: every tenant. */
  private retained: ReadonlySet<string> | null = null;
  private readonly sampleBudget: SampleBudget;
  /** Grammars that were too slow to sample with: refused at submit for a while. */
  private readonly slowGrammars: SlowGrammars;
  /** The longest token text in UTF-8 bytes (promptBounds.ts). */
  readonly maxTokenBytes: number;

  constructor(
    /** The sequences and the model side (sequence.ts): one sequence per slot. */
    private readonly runtime: SequenceRuntime,
    private readonly opts: EngineOptions,
    private readonly emit: Emit,
    /** Where evicted slots' states are saved and restored from; null: evicted caches are simply lost. */
    private readonly kv: SavedStates | null = null,
  ) {
    if (runtime.sequences.length < opts.slots) throw new Error(`the runtime has ${runtime.sequences.length} sequences for ${opts.slots} slots`);
    this.slots = runtime.sequences.slice(0, opts.slots).map((seq, index) => ({ index, seq, tenant: null, cached: [], busy: false, lastUsed: 0 }));
    this.ledger = new TenantLedger(opts.costs);
    this.eogSet = runtime.eogTokens;
    this.sampleBudget = opts.sampleBudget ?? DEFAULT_SAMPLE_BUDGET;
    this.slowGrammars = new SlowGrammars(this.sampleBudget.refuseForMs);
    this.maxTokenBytes = runtime.maxTokenBytes;
  }

  submit(id: string, req: EngineRequest): void {
    const slow = req.grammar ? this.slowGrammars.check(req.grammar, req.tenant, performance.now()) : null;
    if (slow) {
      this.emit({ t: "rejected", id, error: slow });
      return;
    }
    const ready = this.runtime.prepare(id, req);
    if ("code" in ready) {
      this.emit({ t: "rejected", id, error: ready });
      return;
    }
    const { job: prepared, promptText } = ready;
    this.jobs.set(id, prepared);
    this.forks.link(prepared);
    this.ledger.arrive(prepared.tenant);
    this.waiting.push(prepared);
    this.onArrival?.();
    this.emit({ t: "accepted", id, promptTokens: prepared.prompt.length, promptText });
    this.wake();
  }

  cancel(id: string): void {
    const job = this.jobs.get(id);
    if (job) job.cancelled = true;
    this.wake();
  }

  /**
   * Stops stepping a running request (its slot stays held) until resume():
   * the front holds as much of its output as it buffers. Unknown ids: no-op.
   */
  pause(id: string): void {
    if (this.jobs.has(id)) this.paused.add(id);
  }

  resume(id: string): void {
    if (this.paused.delete(id)) this.wake();
  }

  /**
   * Drops the KV cache of every idle slot held by a tenant not in `tenants`
   * (deleted tenants); a slot still running such a tenant's request is
   * cleared when the request ends (release()).
   */
  retainTenants(tenants: ReadonlySet<string>): void {
    this.retained = tenants;
    for (const slot of this.slots) {
      if (!slot.busy && slot.tenant !== null && !tenants.has(slot.tenant)) void this.clearSlot(slot);
    }
  }

  private async clearSlot(slot: Slot): Promise<void> {
    slot.tenant = null;
    slot.cached = [];
    await slot.seq.clearHistory().catch(() => undefined);
  }

  /**
   * Resolves at once when the engine has nothing it can step, else after its
   * next step: how other work on the same cores (embeddings) takes turns with
   * generation, one bounded piece per step, instead of running ahead of it.
   */
  nextTurn(): Promise<void> {
    if (!this.loop || this.stalled) return Promise.resolve();
    return new Promise((resolve) => this.turnWaiters.push(resolve));
  }

  private endTurn(): void {
    if (this.turnWaiters.length === 0) return;
    const waiters = this.turnWaiters;
    this.turnWaiters = [];
    for (const w of waiters) w();
  }

  /** Replaces the tenant policies; takes effect at the next step boundary. */
  setTenantPolicies(policies: readonly TenantPolicy[]): void {
    this.ledger.setPolicies(policies);
    this.wake();
  }

  stats(): EngineStats {
    const busy = this.slots.filter((s) => s.busy).length;
    return {
      running: this.running.size,
      paused: this.paused.size,
      waiting: this.waiting.length,
      slotsBusy: busy,
      slotsIdle: this.slots.length - busy,
      kvCellsUsed: this.slots.reduce((n, s) => n + s.seq.nextTokenIndex, 0),
      kvCellsBusy: this.slots.reduce((n, s) => n + (s.busy ? s.seq.nextTokenIndex : 0), 0),
      steps: this.steps,
      decodedTokens: this.decodedTokens,
      prefixHits: this.prefixHits,
      prefilledTokens: this.prefilledTokens,
      kv: this.kv?.stats() ?? null,
      loopSeconds: { wait: this.phaseMs.wait / 1000, admit: this.phaseMs.admit / 1000, step: this.phaseMs.step / 1000, emit: this.phaseMs.emit / 1000 },
    };
  }

  /** Books the time since `since` to `phase`; returns now, the next phase's start. */
  private spent(phase: LoopPhase, since: number): number {
    const now = performance.now();
    this.phaseMs[phase] += now - since;
    return now;
  }

  /** Stops the loop after the current step; requests still in flight are left to the caller. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
    // Nothing samples after the loop: the raw samplers go before the context does.
    this.runtime.dispose();
  }

  /**
   * After stop(): writes the idle slots' caches out, most recently used
   * first, until `budgetMs` has passed, so the conversations that were warm
   * are restored rather than recomputed after a restart or a deploy.
   */
  async saveWarmSlots(budgetMs: number): Promise<void> {
    if (!this.kv) return;
    const deadline = performance.now() + budgetMs;
    const warm = this.slots.filter((s) => !s.busy && s.tenant !== null).sort((a, b) => b.lastUsed - a.lastUsed);
    for (const slot of warm) {
      if (performance.now() >= deadline) break;
      await this.kv.save(slot.seq, slot.tenant!, slot.seq.nextTokenIndex);
    }
    // The process exits next: finish every save now, evictions' included.
    this.kv.flush();
  }

  private wake(): void {
    this.stalled = false;
    if (this.stopping) return;
    if (this.loop) {
      // The loop may be past the point that would have seen this (a cancel
      // after reapCancelled) and about to stall: it must look once more.
      this.wokenWhileRunning = true;
      return;
    }
    this.loop = this.run().finally(() => {
      this.loop = null;
      this.endTurn();
      const again = this.wokenWhileRunning;
      this.wokenWhileRunning = false;
      if (!this.stopping && (!this.stalled || again) && (this.waiting.length > 0 || this.running.size > 0)) this.wake();
    });
  }

  /** Removes a request from the engine's books; idempotent. */
  private forget(job: Job): void {
    if (this.jobs.get(job.id) !== job) return;
    this.jobs.delete(job.id);
    this.paused.delete(job.id);
    if (this.ledger.leave(job.tenant)) this.awaitFollowUp = true;
    this.forks.forget(job);
  }

  private async run(): Promise<void> {
    while (!this.stopping && (this.waiting.length > 0 || this.running.size > 0)) {
      let t = performance.now();
      if (this.running.size === 0 && this.opts.coalesceMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, this.opts.coalesceMs));
      } else if (this.awaitFollowUp && this.running.size > 0 && this.opts.followUpMs > 0) {
        await this.followUp();
      }
      t = this.spent("wait", t);
      this.awaitFollowUp = false;
      const deltas: Delta[] = [];
      await this.reapCancelled(deltas);
      const plan = planStep({
        waiting: this.forks.plannable(this.waiting, (j) => (this.running.get(j.id) === j ? "running" : this.jobs.get(j.id) === j ? "waiting" : "gone")),
        running: [...this.running.values()]
          .filter((j) => !this.paused.has(j.id))
          .map((j) => ({
            id: j.id,
            tenant: j.tenant,
            prefillRemaining: j.prompt.length - j.evaluated,
            ...(j.batch ? { batch: true, slotIndex: j.slot?.index, generatedTokens: j.generated.length } : {}),
          })),
        slots: this.slots.map((s) => ({ index: s.index, tenant: s.tenant, cachedTokens: s.cached, busy: s.busy, lastUsed: s.lastUsed })),
        stepTokens: this.opts.stepTokens,
        counters: this.ledger.counters,
        policies: this.ledger.policies,
        costs: this.opts.costs,
        ...(this.opts.maxBatchSlots !== undefined ? { maxBatchSlots: this.opts.maxBatchSlots } : {}),
        ...(this.kv ? { saved: this.kv.states() } : {}),
      });
      if (plan.admit.length === 0 && plan.prefill.length === 0 && plan.decode.length === 0) {
        // Only waiting requests no slot may take (caps, reservations): spinning
        // would starve the IPC that can change that. wake() resumes the loop.
        t = this.spent("admit", t);
        if (deltas.length > 0) this.emit({ t: "step", deltas });
        this.spent("emit", t);
        this.stalled = true;
        return;
      }
      await this.preempt(plan);
      const unserved = await this.admit(plan);
      t = this.spent("admit", t);
      await this.step(plan, deltas, unserved);
      t = this.spent("step", t);
      this.ledger.settle();
      if (deltas.length > 0) this.emit({ t: "step", deltas });
      this.spent("emit", t);
      this.endTurn();
    }
  }

  /** Waits up to followUpMs, or until a request arrives. */
  private async followUp(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.onArrival = resolve;
      timer = setTimeout(resolve, this.opts.followUpMs);
    });
    clearTimeout(timer);
    this.onArrival = null;
  }

  /** Cancelled requests end at the step boundary, freeing their slot for this step's admissions. */
  private async reapCancelled(deltas: Delta[]): Promise<void> {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const job = this.waiting[i]!;
      if (!job.cancelled) continue;
      this.waiting.splice(i, 1);
      this.forget(job);
      // Its end, with what it used: nothing (the front settles quotas on it).
      deltas.push({ id: job.id, text: "", tokens: 0, finish: "stop", usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 } });
    }
    const cancelled = [...this.running.values()].filter((j) => j.cancelled);
    await Promise.all(cancelled.map((j) => this.release(j)));
    for (const j of cancelled) deltas.push(finalDelta(j, "stop"));
  }

  /**
   * Ends the batch requests the plan preempts before its admissions take their
   * slots. The slot keeps its cache (the retry may reuse it); the caller is
   * told to retry. What it generated is lost: batch requests are short, and
   * preempting the one with the least work done keeps the loss small.
   */
  private async preempt(plan: StepPlan): Promise<void> {
    for (const id of plan.preempt ?? []) {
      const job = this.running.get(id);
      if (!job) continue;
      await this.release(job);
      this.emit({
        t: "rejected",
        id,
        error: {
          code: "batch_preempted",
          param: null,
          message: "The batch request gave its slot to an interactive request and will be retried.",
          retryAfterSeconds: 0,
        },
      });
    }
  }

  /**
   * Gives each admission its slot and carries out its source. Returns the
   * admissions whose source failed: their slot was cleared, and their whole
   * prompt is read from the next step's plan on (a half-copied or
   * half-loaded state is never used), so this step's chunk for them is not
   * read.
   */
  private async admit(plan: StepPlan): Promise<Set<string>> {
    const unserved = new Set<string>();
    await Promise.all(
      plan.admit.map(async (a) => {
        const job = this.jobs.get(a.id)!;
        const slot = this.slots[a.slotIndex]!;
        this.waiting.splice(this.waiting.indexOf(job), 1);
        slot.busy = true;
        slot.lastUsed = ++this.clock;
        // Held by this tenant from now on (caps, reservations), whatever the cache holds.
        slot.tenant = job.tenant;
        job.slot = slot;
        this.running.set(a.id, job);
        let served: number;
        try {
          served = await this.serve(a, job, slot);
        } catch (err) {
          await this.fail(job, err);
          return;
        }
        if (served < servedTokens(a.source)) unserved.add(a.id);
        slot.cached = job.prompt.slice(0, served);
        job.evaluated = job.cachedTokens = served;
        if (served > 0 && a.source.kind !== "copy") this.prefixHits++;
        job.queueMs = performance.now() - job.submittedAtMs;
      }),
    );
    return unserved;
  }

  /**
   * Carries out an admission's source on its slot: first saves what the slot
   * loses when the plan says whose it is, then keeps, restores or copies.
   * Returns the prompt tokens the slot now holds: what the plan said, or 0
   * when a restore or copy failed and the slot was cleared.
   */
  private async serve(a: Admission, job: Job, slot: Slot): Promise<number> {
    const { source } = a;
    const seq = slot.seq;
    const kept = source.kind === "slot" ? source.keepTokens : 0;
    if (this.kv && a.saveFor !== undefined) await this.kv.save(seq, a.saveFor, seq.nextTokenIndex - kept, job.id);
    switch (source.kind) {
      case "fresh":
        await seq.clearHistory();
        return 0;
      case "slot":
        await seq.keep(source.keepTokens);
        return source.keepTokens;
      case "restore":
        if (this.kv && (await this.kv.restore(seq, source.stateId, job.tenant, job.id))) {
          // The state may hold more than the prompt shares with it.
          await seq.keep(source.tokens);
          return source.tokens;
        }
        await seq.clearHistory();
        return 0;
      case "copy": {
        const leader = this.slots[source.fromSlot];
        if (leader && (await seq.copyPrefix(leader.seq, source.tokens))) return source.tokens;
        await seq.clearHistory();
        return 0;
      }
    }
  }

  private async step(plan: StepPlan, deltas: Delta[], unserved: ReadonlySet<string>): Promise<void> {
    // Start every evaluation before awaiting any: they must share one decode.
    const work: Array<Promise<void>> = [];
    /** The job whose sampling each work item ends with; null for a prefill chunk (no sampling). */
    const sampling: Array<Job | null> = [];
    for (const id of plan.decode) {
      const job = this.running.get(id);
      if (!job?.gen) continue;
      work.push(job.gen.next().then((r) => this.accept(job, r)));
      sampling.push(job);
    }
    for (const chunk of plan.prefill) {
      const job = this.running.get(chunk.id);
      if (!job?.slot || unserved.has(chunk.id)) continue;
      const tokens = job.prompt.slice(job.evaluated, job.evaluated + chunk.tokens);
      job.evaluated += tokens.length;
      this.prefilledTokens += tokens.length;
      this.ledger.charge(job.tenant, tokens.length, 0);
      if (!chunk.final) {
        work.push(job.slot.seq.prefill(tokens));
        sampling.push(null);
      } else {
        job.gen = job.slot.seq.generate(tokens, job.options, job.topLogprobs !== null);
        work.push(job.gen.next().then((r) => this.accept(job, r)));
        sampling.push(job);
      }
    }
    if (work.length === 0) return;
    const results = await Promise.allSettled(work);
    this.steps++;
    const samplingErrors = this.runtime.takeSamplingErrors();
    const failed = results.flatMap((r, i) => (r.status === "rejected" ? [{ job: sampling[i]!, reason: r.reason as unknown }] : []));
    // A sampling failure is its own job's (the decode it shared went well); any
    // other failure is the decode's, which leaves every sequence in it in an unknown state.
    const decodeFailure = failed.find((f) => f.job === null || (f.reason as Error)?.message !== SAMPLE_FAILED);
    if (decodeFailure) {
      for (const job of [...this.running.values()]) await this.fail(job, decodeFailure.reason);
      return;
    }
    for (const { job } of failed) {
      const cause = samplingErrors.length > 0 ? samplingErrors.join("; ") : SAMPLE_FAILED;
      await this.fail(job!, new Error(`sampling failed: ${cause}`));
    }
    for (const job of [...this.running.values()]) {
      if (job.slowSampling === null) continue;
      this.slowGrammars.add(job.grammarSpec!, job.tenant, performance.now());
      await this.fail(job, null, slowSamplingError(job.grammarSpec!, job.slowSampling, this.sampleBudget));
    }
    for (const job of [...this.running.values()]) {
      if (job.newTokens === 0 && job.text === "") continue;
      if (isFinished(job)) continue;
      deltas.push({ id: job.id, text: job.text, tokens: job.newTokens, ...takeLogprobs(job) });
      job.text = "";
      job.newTokens = 0;
    }
    for (const job of [...this.running.values()]) {
      const reason = finishReason(job);
      if (reason) {
        await this.release(job);
        deltas.push(finalDelta(job, reason));
      }
    }
  }

  private accept(job: Job, result: IteratorResult<Token | TokenWithLogprobs, void>): void {
    const now = performance.now();
    job.prefillMs ??= now - job.submittedAtMs - job.queueMs;
    // Only grammars make a job's sampling cost unbounded (the rest is bounded by the vocabulary).
    // Its own sampling only, not the neighbours' sampled before it on the same thread (samplingGuard.ts).
    if (job.grammarSpec) chargeSampling(job, this.runtime.lastSampleOwnMs(), this.sampleBudget);
    if (result.done) {
      job.finish = "stop"; // the generator ended on its own: nothing more will come
      return;
    }
    this.decodedTokens++;
    this.ledger.charge(job.tenant, 0, 1);
    const value = result.value;
    const token = typeof value === "number" ? value : value.token;
    acceptToken(job, token, this.eogSet);
    // Every sampled token gets an entry, those after a stop string began
    // included (generated and billed), except the one that ends the turn.
    // A job that asked but got a bare token makes readLogprobs throw: no entry is ever made up.
    if (job.topLogprobs !== null && !endsTurn(job, token, this.eogSet)) {
      job.logprobs.push(this.runtime.logprobEntry(token, typeof value === "number" ? undefined : value.probabilities, job.topLogprobs));
    }
  }

  /** Ends a running job and returns its slot, keeping the slot's KV cache for prefix reuse. */
  private async release(job: Job): Promise<void> {
    this.running.delete(job.id);
    this.forget(job);
    const gen = job.gen;
    job.gen = null;
    if (gen) await gen.return(undefined).catch(() => undefined);
    const slot = job.slot;
    if (!slot) return;
    slot.cached = slot.seq.contextTokens;
    slot.busy = false;
    slot.lastUsed = ++this.clock;
    if (this.retained && slot.tenant !== null && !this.retained.has(slot.tenant)) await this.clearSlot(slot);
  }

  private async fail(job: Job, err: unknown, error?: EngineErrorPayload): Promise<void> {
    const slot = job.slot;
    await this.release(job);
    if (slot) {
      slot.tenant = null;
      slot.cached = [];
      await slot.seq.clearHistory().catch(() => undefined);
    }
    this.emit({
      t: "rejected",
      id: job.id,
      error: error ?? { code: "engine_error", param: null, message: `Inference failed: ${(err as Error)?.message ?? String(err)}` },
    });
  }
}
