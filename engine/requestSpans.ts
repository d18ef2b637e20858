// The engine worker's spans for traced requests (EngineRequest.trace): when a
// request ends, its time in the worker becomes three spans under the front's
// span for it: waiting for a slot, reading the prompt (with the tokens the
// cache served and those computed), and decoding. They are built from the
// timings the engine already reports in the final usage (queueMs,
// prefillMs), so the step loop does no tracing work of its own. A KV state
// saved or restored for a request's admission is a span of its own under the
// same parent (TracedStates, which wraps the store only when tracing is on).
import { context, propagation, SpanStatusCode, type Context, type Span, type Tracer } from "@opentelemetry/api";
import type { Delta, EngineErrorPayload } from "./protocol.js";
import type { SavedSize, SavedStates, StateSequence } from "./sequence.js";

interface Pending {
  carrier: Record<string, string>;
  tenant: string;
  /** Epoch ms at submit. */
  submittedAt: number;
}

export class RequestSpans {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly tracer: Tracer) {}

  submitted(id: string, tenant: string, carrier: Record<string, string> | undefined): void {
    if (carrier) this.pending.set(id, { carrier, tenant, submittedAt: Date.now() });
  }

  /** The request ended: a final delta (with the engine's timings), or a refusal. */
  ended(id: string, end: { delta: Delta } | { error: EngineErrorPayload }): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const parent = propagation.extract(context.active(), p.carrier);
    const now = Date.now();
    const attrs = { "llamux.tenant.scope": p.tenant };
    if ("error" in end) {
      const span = this.tracer.startSpan("llamux.engine.refused", { startTime: p.submittedAt, attributes: { ...attrs, "error.type": end.error.code } }, parent);
      span.end(now);
      return;
    }
    const u = end.delta.usage;
    const queueMs = u?.queueMs ?? 0;
    const admitted = p.submittedAt + queueMs;
    const wait = this.tracer.startSpan("llamux.engine.wait_for_slot", { startTime: p.submittedAt, attributes: attrs }, parent);
    wait.end(admitted);
    if (u?.prefillMs === undefined) return; // cancelled before its first token
    const firstToken = admitted + u.prefillMs;
    const prefill = this.tracer.startSpan(
      "llamux.engine.prefill",
      {
        startTime: admitted,
        attributes: {
          ...attrs,
          "gen_ai.usage.input_tokens": u.promptTokens,
          "gen_ai.usage.cache_read.input_tokens": u.cachedTokens,
          "llamux.prompt.computed_tokens": u.promptTokens - u.cachedTokens,
        },
      },
      parent,
    );
    prefill.end(firstToken);
    const decode = this.tracer.startSpan(
      "llamux.engine.decode",
      {
        startTime: firstToken,
        attributes: { ...attrs, "gen_ai.usage.output_tokens": u.completionTokens, "gen_ai.response.finish_reasons": [end.delta.finish ?? "stop"] },
      },
      parent,
    );
    decode.end(Math.max(firstToken, now));
  }

  /** The context a traced request's worker spans go under; null: not traced (or over). */
  parentOf(id: string): { parent: Context; tenant: string } | null {
    const p = this.pending.get(id);
    return p ? { parent: propagation.extract(context.active(), p.carrier), tenant: p.tenant } : null;
  }

  /** The worker is stopping: requests still open get no spans. */
  clear(): void {
    this.pending.clear();
  }
}

/** Wraps the worker's sender so every final delta and refusal of a traced request ends its spans. */
export function tracedSender<M extends { t: string }>(send: (msg: M) => void, spans: RequestSpans): (msg: M) => void {
  return (msg) => {
    const m = msg as unknown as { t: string; id?: string; deltas?: Delta[]; error?: EngineErrorPayload };
    if (m.t === "step" && m.deltas) for (const d of m.deltas) if (d.finish) spans.ended(d.id, { delta: d });
    if (m.t === "rejected" && m.id && m.error) spans.ended(m.id, { error: m.error });
    send(msg);
  };
}

/**
 * The saved-state store with a span for each save and restore done for a
 * traced request: whose state (the tenant scope; a save writes out the slot's
 * previous owner, who may be another tenant), its bytes and tokens, and
 * whether it was written or restored. Saves at shutdown belong to no request.
 */
export class TracedStates implements SavedStates {
  constructor(
    private readonly store: SavedStates,
    private readonly spans: RequestSpans,
    private readonly tracer: Tracer,
  ) {}

  states() {
    return this.store.states();
  }

  stats() {
    return this.store.stats();
  }

  flush(): void {
    this.store.flush();
  }

  async save(seq: StateSequence, tenant: string, lostTokens: number, requestId?: string): Promise<SavedSize | null | undefined> {
    const traced = requestId === undefined ? null : this.spans.parentOf(requestId);
    if (!traced) return this.store.save(seq, tenant, lostTokens, requestId);
    const span = this.tracer.startSpan(
      "llamux.engine.kv_save",
      { attributes: { "llamux.tenant.scope": traced.tenant, "llamux.kv.owner.scope": tenant, "llamux.kv.lost_tokens": lostTokens } },
      traced.parent,
    );
    try {
      const saved = await this.store.save(seq, tenant, lostTokens, requestId);
      span.setAttribute("llamux.kv.saved", !!saved);
      if (saved) span.setAttributes({ "llamux.kv.state.bytes": saved.bytes, "llamux.kv.state.tokens": saved.tokens });
      return saved;
    } catch (err) {
      failed(span, err);
      throw err;
    } finally {
      span.end();
    }
  }

  async restore(seq: StateSequence, id: string, tenant: string, requestId?: string): Promise<boolean> {
    const traced = requestId === undefined ? null : this.spans.parentOf(requestId);
    if (!traced) return this.store.restore(seq, id, tenant, requestId);
    let state: { bytes: number; tokens: number } | null = null;
    for (const s of this.store.states()) if (s.id === id) state = { bytes: s.bytes, tokens: s.tokens.length };
    const span = this.tracer.startSpan(
      "llamux.engine.kv_restore",
      { attributes: { "llamux.tenant.scope": traced.tenant, "llamux.kv.owner.scope": tenant } },
      traced.parent,
    );
    if (state) span.setAttributes({ "llamux.kv.state.bytes": state.bytes, "llamux.kv.state.tokens": state.tokens });
    try {
      const restored = await this.store.restore(seq, id, tenant, requestId);
      span.setAttribute("llamux.kv.restored", restored);
      return restored;
    } catch (err) {
      failed(span, err);
      throw err;
    } finally {
      span.end();
    }
  }
}

function failed(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR });
  span.setAttribute("error.type", err instanceof Error ? err.name : "error");
}
