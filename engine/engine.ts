// The engine: one llama.cpp context, a fixed pool of slots (sequences), and a
// single step loop that advances every running request in one decode.
//
// node-llama-cpp merges all evaluations queued on a context before its next
// dispatch into one llama_decode. Each step therefore starts every slot's
// evaluation synchronously in the same tick and awaits them together; a
// per-request loop would let requests drift apart and split the batch.
import type { LlamaContext, LlamaContextSequence, LlamaModel, SequenceEvaluateOptions, Token } from "node-llama-cpp";
import { ChatTemplate, tokenizeText } from "../models/chatTemplate.js";
import { IncrementalDetokenizer } from "./detokenizer.js";
import type { Delta, EngineErrorPayload, EngineRequest, EngineStats, FairnessCosts, FinishReason, FromWorker, TenantPolicy } from "./protocol.js";
import { buildEvaluateOptions, findEogTokens } from "./sampling.js";
import { planStep, type StepPlan } from "./scheduler.js";
import { StopMatcher } from "./stops.js";
import { TenantLedger } from "./tenantLedger.js";

interface Slot {
  index: number;
  seq: LlamaContextSequence;
  tenant: string | null;
  /** Tokens whose KV state the sequence holds (mirrors seq.contextTokens between requests). */
  cached: Token[];
  busy: boolean;
  lastUsed: number;
}

type Generator = AsyncGenerator<Token, void, void | Token | Token[]>;

interface Job {
  id: string;
  tenant: string;
  priority: number;
  prompt: Token[];
  maxTokens: number;
  options: SequenceEvaluateOptions;
  generated: Token[];
  stopTokens: ReadonlySet<Token>;
  ignoreEos: boolean;
  detok: IncrementalDetokenizer;
  stops: StopMatcher;
  slot: Slot | null;
  /** Prompt tokens already in the slot's KV cache. */
  evaluated: number;
  cachedTokens: number;
  gen: Generator | null;
  cancelled: boolean;
  finish?: FinishReason;
  /** A stop string matched: everything after it, held text included, is dropped. */
  stopMatched: boolean;
  /** Output accumulated this step, sent as one delta. */
  text: string;
  newTokens: number;
  /** performance.now() at submit; queueMs is the wait from there to a slot. */
  submittedAtMs: number;
  queueMs: number;
}

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
  /** Prices of the fair scheduler's virtual tokens. */
  costs: FairnessCosts;
}

type Emit = (msg: FromWorker) => void;

export class Engine {
  private readonly slots: Slot[];
  private readonly waiting: Job[] = [];
  private readonly running = new Map<string, Job>();
  private readonly jobs = new Map<string, Job>();
  private readonly eogTokens: Token[];
  private readonly eogSet: ReadonlySet<Token>;
  private loop: Promise<void> | null = null;
  private stopping = false;
  /** Nothing can be admitted or run until a request, a cancel or a policy change arrives. */
  private stalled = false;
  private readonly ledger: TenantLedger;
  private clock = 0;
  private steps = 0;
  private decodedTokens = 0;

  constructor(
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly template: ChatTemplate,
    private readonly opts: EngineOptions,
    private readonly emit: Emit,
  ) {
    this.slots = Array.from({ length: opts.slots }, (_, index) => ({
      index,
      seq: context.getSequence(),
      tenant: null,
      cached: [],
      busy: false,
      lastUsed: 0,
    }));
    this.ledger = new TenantLedger(opts.costs);
    this.eogTokens = findEogTokens(model);
    this.eogSet = new Set(this.eogTokens);
  }

  submit(id: string, req: EngineRequest): void {
    const prepared = this.prepare(id, req);
    if ("code" in prepared) {
      this.emit({ t: "rejected", id, error: prepared });
      return;
    }
    // Echo returns the prompt as the caller wrote it; only token prompts need decoding.
    const promptText = !req.echo ? null : req.prompt.kind === "text" ? req.prompt.text : this.model.detokenize(prepared.prompt, false);
    this.jobs.set(id, prepared);
    this.ledger.arrive(prepared.tenant);
    this.waiting.push(prepared);
    this.emit({ t: "accepted", id, promptTokens: prepared.prompt.length, promptText });
    this.wake();
  }

  cancel(id: string): void {
    const job = this.jobs.get(id);
    if (job) job.cancelled = true;
    this.wake();
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
      waiting: this.waiting.length,
      slotsBusy: busy,
      slotsIdle: this.slots.length - busy,
      kvCellsUsed: this.slots.reduce((n, s) => n + s.seq.nextTokenIndex, 0),
      steps: this.steps,
      decodedTokens: this.decodedTokens,
    };
  }

  /** Stops the loop after the current step; requests still in flight are left to the caller. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }

  private prepare(id: string, req: EngineRequest): Job | EngineErrorPayload {
    let prompt: Token[];
    let stopStrings = req.stop;
    let stopTokens: ReadonlySet<Token> = new Set();
    if (req.prompt.kind === "chat") {
      const rendered = this.template.render(req.prompt.messages);
      prompt = rendered.tokens;
      stopStrings = [...req.stop, ...rendered.stopStrings];
      stopTokens = this.template.stopTokenIds;
    } else if (req.prompt.kind === "text") {
      prompt = tokenizeText(this.model, req.prompt.text);
    } else {
      prompt = req.prompt.tokens as Token[];
      const vocab = this.vocabSize();
      if (prompt.some((t) => t >= vocab)) {
        return { code: "invalid_prompt", param: "prompt", message: `Token ids in 'prompt' must be below the vocabulary size ${vocab}.` };
      }
    }
    if (prompt.length === 0) {
      return { code: "invalid_prompt", param: "prompt", message: "The prompt is empty: it produced no tokens." };
    }
    const ctx = this.opts.contextPerSlot;
    const maxTokens = req.maxTokens ?? ctx - prompt.length;
    if (prompt.length + Math.max(1, maxTokens) > ctx) {
      const asked = req.maxTokens === null ? "" : ` + ${req.maxTokens} max_tokens`;
      return {
        code: "context_length_exceeded",
        param: req.prompt.kind === "chat" ? "messages" : "prompt",
        message:
          `This model's maximum context length is ${ctx} tokens. However, you requested ` +
          `${prompt.length + (req.maxTokens ?? 0)} tokens (${prompt.length} in the prompt${asked}). ` +
          "Please reduce the length of the prompt or max_tokens.",
      };
    }
    const setup = buildEvaluateOptions(this.model, req.sampling, this.eogTokens, maxTokens);
    const decode = (tokens: readonly number[], context: readonly number[]) =>
      this.model.detokenize(tokens as Token[], false, context as Token[]);
    return {
      id,
      tenant: req.tenant,
      priority: Number.isFinite(req.priority) ? req.priority : 0,
      prompt,
      maxTokens,
      options: setup.options,
      generated: setup.generated,
      stopTokens,
      ignoreEos: req.sampling.ignoreEos,
      detok: new IncrementalDetokenizer(decode, prompt as number[]),
      stops: new StopMatcher(stopStrings),
      slot: null,
      evaluated: 0,
      cachedTokens: 0,
      gen: null,
      cancelled: false,
      stopMatched: false,
      text: "",
      newTokens: 0,
      submittedAtMs: performance.now(),
      queueMs: 0,
    };
  }

  private vocabSize(): number {
    return this.model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? Infinity;
  }

  private wake(): void {
    this.stalled = false;
    if (this.loop || this.stopping) return;
    this.loop = this.run().finally(() => {
      this.loop = null;
      if (!this.stopping && !this.stalled && (this.waiting.length > 0 || this.running.size > 0)) this.wake();
    });
  }

  /** Removes a request from the engine's books; idempotent. */
  private forget(job: Job): void {
    if (this.jobs.get(job.id) !== job) return;
    this.jobs.delete(job.id);
    this.ledger.leave(job.tenant);
  }

  private async run(): Promise<void> {
    while (!this.stopping && (this.waiting.length > 0 || this.running.size > 0)) {
      if (this.running.size === 0 && this.opts.coalesceMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, this.opts.coalesceMs));
      }
      const deltas: Delta[] = [];
      await this.reapCancelled(deltas);
      const plan = planStep({
        waiting: this.waiting.map((j) => ({ id: j.id, tenant: j.tenant, priority: j.priority, promptTokens: j.prompt })),
        running: [...this.running.values()].map((j) => ({ id: j.id, tenant: j.tenant, prefillRemaining: j.prompt.length - j.evaluated })),
        slots: this.slots.map((s) => ({ index: s.index, tenant: s.tenant, cachedTokens: s.cached, busy: s.busy, lastUsed: s.lastUsed })),
        stepTokens: this.opts.stepTokens,
        counters: this.ledger.counters,
        policies: this.ledger.policies,
        costs: this.opts.costs,
      });
      if (plan.admit.length === 0 && plan.prefill.length === 0 && plan.decode.length === 0) {
        // Only waiting requests no slot may take (caps, reservations): spinning
        // would starve the IPC that can change that. wake() resumes the loop.
        if (deltas.length > 0) this.emit({ t: "step", deltas });
        this.stalled = true;
        return;
      }
      await this.admit(plan);
      await this.step(plan, deltas);
      this.ledger.settle();
      if (deltas.length > 0) this.emit({ t: "step", deltas });
    }
  }

  /** Cancelled requests end at the step boundary, freeing their slot for this step's admissions. */
  private async reapCancelled(deltas: Delta[]): Promise<void> {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const job = this.waiting[i]!;
      if (!job.cancelled) continue;
      this.waiting.splice(i, 1);
      this.forget(job);
    }
    const cancelled = [...this.running.values()].filter((j) => j.cancelled);
    await Promise.all(cancelled.map((j) => this.release(j)));
    for (const j of cancelled) deltas.push(this.finalDelta(j, "stop"));
  }

  private async admit(plan: StepPlan): Promise<void> {
    await Promise.all(
      plan.admit.map(async ({ id, slotIndex, reuseTokens }) => {
        const job = this.jobs.get(id)!;
        const slot = this.slots[slotIndex]!;
        this.waiting.splice(this.waiting.indexOf(job), 1);
        slot.busy = true;
        slot.lastUsed = ++this.clock;
        // Held by this tenant from now on (caps, reservations), whatever the cache holds.
        slot.tenant = job.tenant;
        slot.cached = job.prompt.slice(0, reuseTokens);
        job.slot = slot;
        this.running.set(id, job);
        try {
          if (reuseTokens === 0) await slot.seq.clearHistory();
          else if (slot.seq.nextTokenIndex > reuseTokens) {
            await slot.seq.eraseContextTokenRanges([{ start: reuseTokens, end: slot.seq.nextTokenIndex }]);
          }
        } catch (err) {
          await this.fail(job, err);
          return;
        }
        job.evaluated = job.cachedTokens = reuseTokens;
        job.queueMs = performance.now() - job.submittedAtMs;
      }),
    );
  }

  private async step(plan: StepPlan, deltas: Delta[]): Promise<void> {
    // Start every evaluation before awaiting any: they must share one decode.
    const work: Array<Promise<void>> = [];
    for (const id of plan.decode) {
      const job = this.running.get(id);
      if (job?.gen) work.push(job.gen.next().then((r) => this.accept(job, r)));
    }
    for (const chunk of plan.prefill) {
      const job = this.running.get(chunk.id);
      if (!job?.slot) continue;
      const tokens = job.prompt.slice(job.evaluated, job.evaluated + chunk.tokens);
      job.evaluated += tokens.length;
      this.ledger.charge(job.tenant, tokens.length, 0);
      if (!chunk.final) {
        work.push(job.slot.seq.evaluateWithoutGeneratingNewTokens(tokens));
      } else {
        job.gen = job.slot.seq.evaluate(tokens, job.options);
        work.push(job.gen.next().then((r) => this.accept(job, r)));
      }
    }
    if (work.length === 0) return;
    const results = await Promise.allSettled(work);
    this.steps++;
    const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure) {
      // A failed decode leaves every sequence in it in an unknown state.
      for (const job of [...this.running.values()]) await this.fail(job, failure.reason);
      return;
    }
    for (const job of [...this.running.values()]) {
      if (job.newTokens === 0 && job.text === "") continue;
      if (this.isFinished(job)) continue;
      deltas.push({ id: job.id, text: job.text, tokens: job.newTokens });
      job.text = "";
      job.newTokens = 0;
    }
    for (const job of [...this.running.values()]) {
      const reason = this.finishReason(job);
      if (reason) {
        await this.release(job);
        deltas.push(this.finalDelta(job, reason));
      }
    }
  }

  private accept(job: Job, result: IteratorResult<Token, void>): void {
    if (result.done) {
      job.finish = "stop"; // the generator ended on its own: nothing more will come
      return;
    }
    const token = result.value;
    this.decodedTokens++;
    this.ledger.charge(job.tenant, 0, 1);
    job.generated.push(token);
    job.newTokens++;
    if ((!job.ignoreEos && this.eogSet.has(token)) || job.stopTokens.has(token)) {
      job.finish = "stop";
      return;
    }
    const { text, stopped } = job.stops.push(job.detok.push(token as number));
    job.text += text;
    if (stopped) {
      job.finish = "stop";
      job.stopMatched = true;
    } else if (job.generated.length >= job.maxTokens) job.finish = "length";
  }

  private isFinished(job: Job): boolean {
    return job.finish !== undefined || job.cancelled;
  }

  private finishReason(job: Job): FinishReason | null {
    if (job.finish) return job.finish;
    return job.cancelled ? "stop" : null;
  }

  private finalDelta(job: Job, reason: FinishReason): Delta {
    let text = job.text;
    if (!job.stopMatched && !job.cancelled) {
      // Generation ended without a stop string: release what was held back.
      const tail = job.stops.push(job.detok.flush());
      text += tail.text;
      if (!tail.stopped) text += job.stops.flush();
    }
    job.text = "";
    const tokens = job.newTokens;
    job.newTokens = 0;
    return {
      id: job.id,
      text,
      tokens,
      finish: reason,
      usage: { promptTokens: job.prompt.length, completionTokens: job.generated.length, cachedTokens: job.cachedTokens, queueMs: job.queueMs },
    };
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
  }

  private async fail(job: Job, err: unknown): Promise<void> {
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
      error: { code: "engine_error", param: null, message: `Inference failed: ${(err as Error)?.message ?? String(err)}` },
    });
  }
}
