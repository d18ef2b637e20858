// The engine worker's spans for traced requests (EngineRequest.trace): when a
// request ends, its time in the worker becomes three spans under the front's
// span for it: waiting for a slot, reading the prompt (with the tokens the
// cache served and those computed), and decoding. They are built from the
// timings the engine already reports in the final usage (queueMs,
// prefillMs), so the step loop does no tracing work of its own.
import { context, propagation, type Tracer } from "@opentelemetry/api";
import type { Delta, EngineErrorPayload } from "./protocol.js";

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
        attributes: { ...attrs, "gen_ai.usage.input_tokens": u.promptTokens, "gen_ai.usage.cache_read.input_tokens": u.cachedTokens, "llamux.prompt.computed_tokens": u.promptTokens - u.cachedTokens },
      },
      parent,
    );
    prefill.end(firstToken);
    const decode = this.tracer.startSpan(
      "llamux.engine.decode",
      { startTime: firstToken, attributes: { ...attrs, "gen_ai.usage.output_tokens": u.completionTokens, "gen_ai.response.finish_reasons": [end.delta.finish ?? "stop"] } },
      parent,
    );
    decode.end(Math.max(firstToken, now));
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
