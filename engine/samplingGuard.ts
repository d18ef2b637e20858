// Keeps one sequence's sampling failure or slowness its own.
//
// node-llama-cpp samples every sequence of a decode inside the context's batch
// dispatch (LlamaContext.js decodeTokenBatchItems, 3.22.1). A sampleToken that
// rejects there ("Failed to accept token in sampler: Unexpected empty grammar
// stack", a degenerate sampler chain under a grammar) escapes the dispatch as
// an unhandled rejection: the worker exited with every tenant's requests in
// it, and the failing sequence's evaluation would never have settled anyway.
// So the context's native sampleToken is wrapped once more: a failure is kept
// here and the call returns -1, which node-llama-cpp's own generator turns
// into "Failed to sample next token", thrown to that one sequence's caller
// (SequenceEvaluate.next() rejects): the engine fails that job alone.
//
// The wrappers also time each sampling call on its own (lastSampleOwnMs), so
// the engine can tell how long a job's own sampling took (its next() resolves
// when its sampling is done: node-llama-cpp settles each sequence of a batch
// on its own). The step loop waits for every job's sampling before the next
// decode, so a grammar that is slow to apply holds every tenant.
import type { LlamaContext } from "node-llama-cpp";

type Native = (...args: unknown[]) => Promise<unknown>;

/** The message node-llama-cpp's generator throws when sampleToken returned -1. */
export const SAMPLE_FAILED = "Failed to sample next token";

export class SamplingGuard {
  /**
   * How long the sampling call that finished last took on its own: from when
   * it could start (its call, or the end of the decode or sampling before it,
   * whichever is later) to its end. node-llama-cpp starts every sequence's
   * sampling at once after a decode, and they run one after another on the
   * one pool thread, so the time since the decode would charge a job for the
   * jobs sampled before it: a slow grammar would fail its neighbours. Each
   * job's accept() runs in the microtasks after its own sampling resolves,
   * before the next one can, and reads this.
   */
  lastSampleOwnMs = 0;
  /** The end of the latest decode or sampling call. */
  private lastEndMs = 0;
  /** Native sampling errors since the last take(), in the order they happened. */
  private errors: string[] = [];
  private readonly ctx: Record<string, unknown>;
  private readonly originals: Array<[string, PropertyDescriptor | undefined]> = [];

  /** Throws at engine start if node-llama-cpp's internals are not the shape this relies on. */
  constructor(context: LlamaContext) {
    const ctx = (context as unknown as { _ctx?: Record<string, unknown> })._ctx;
    if (!ctx || typeof ctx.sampleToken !== "function" || typeof ctx.decodeBatch !== "function") {
      throw new Error("node-llama-cpp's internals changed: LlamaContext._ctx.sampleToken/decodeBatch; update engine/samplingGuard.ts");
    }
    this.ctx = ctx;
    const sample = (ctx.sampleToken as Native).bind(ctx);
    this.shadow("sampleToken", async (...args: unknown[]) => {
      const calledMs = performance.now();
      try {
        return await sample(...args);
      } catch (err) {
        this.errors.push((err as Error)?.message ?? String(err));
        return -1;
      } finally {
        const end = performance.now();
        this.lastSampleOwnMs = end - Math.max(calledMs, this.lastEndMs);
        this.lastEndMs = end;
      }
    });
    const decode = (ctx.decodeBatch as Native).bind(ctx);
    this.shadow("decodeBatch", async (...args: unknown[]) => {
      try {
        return await decode(...args);
      } finally {
        this.lastEndMs = performance.now();
      }
    });
  }

  /** The sampling errors since the last call, and forgets them. */
  take(): string[] {
    const out = this.errors;
    this.errors = [];
    return out;
  }

  /** Puts back what was there before (after the step loop: nothing samples any more). */
  dispose(): void {
    for (const [name, before] of this.originals.reverse()) {
      if (before) Object.defineProperty(this.ctx, name, before);
      else delete this.ctx[name];
    }
    this.originals.length = 0;
  }

  private shadow(name: string, fn: Native): void {
    this.originals.push([name, Object.getOwnPropertyDescriptor(this.ctx, name)]);
    // The native method is a read-only prototype property (RawLogprobs may have shadowed it already).
    Object.defineProperty(this.ctx, name, { value: fn, writable: true, configurable: true, enumerable: false });
    if (this.ctx[name] !== fn) throw new Error(`node-llama-cpp's internals changed: LlamaContext._ctx.${name} cannot be wrapped`);
  }
}
