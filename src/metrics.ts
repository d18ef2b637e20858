// Prometheus metrics (prom-client). One registry per server instance, so
// tests can run several servers in one process without clashing.
//
// Every label has a bounded set of values, so no caller can grow /metrics (or
// the front's memory) by sending requests:
//   endpoint       endpointLabel(): a fixed list, unknown paths fold into "other";
//   status         HTTP status codes the server itself answers with (and 499);
//   model          the name a request used, counted only once requireModel found it
//                  (ids and aliases of the configured models);
//   tenant         set only after authentication, so only registered tenants
//                  (or "default" in single-user mode); forgetTenant drops a
//                  deleted tenant's series;
//   reason         rejection causes from the error catalogue;
//   status, finish_reason (generations)  ok|error|cancelled, the engine's finish reasons;
//   phase          the engine loop's four phases.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { EngineClient } from "../engine/index.js";

export interface Metrics {
  registry: Registry;
  requests: Counter<"endpoint" | "status">;
  promptTokens: Counter<"model" | "tenant">;
  completionTokens: Counter<"model" | "tenant">;
  cachedTokens: Counter<"model" | "tenant">;
  requestSeconds: Histogram<"endpoint">;
  /**
   * Generations ended, one per choice (what the engine ran): `status` ok,
   * error or cancelled (the client left); `finish_reason` as the response
   * said it, `none` when there was no finish.
   */
  generations: Counter<"model" | "tenant" | "status" | "finish_reason">;
  /** Requests refused or shed before they ran: quota, rate limit, queue caps (tenant, server), queue timeout. */
  rejections: Counter<"tenant" | "reason">;
  /** Time a request waited for a KV slot. */
  queueSeconds: Histogram<"tenant">;
  /** From the request's arrival to its first output. */
  ttftSeconds: Histogram<"model">;
  /** Between consecutive outputs of one stream (one engine step apart). */
  itlSeconds: Histogram<"model">;
  /** From a choice's admission to a slot to its first sampled token (prompt read, cache reuse included). */
  prefillSeconds: Histogram<"model">;
  /** The OpenTelemetry GenAI semantic conventions' model-server metrics, under their names and buckets. */
  genAi: {
    timeToFirstToken: Histogram<GenAiLabel>;
    timePerOutputToken: Histogram<GenAiLabel>;
    requestDuration: Histogram<GenAiLabel | "error_type">;
  };
}

/** Labels of the GenAI metrics: the conventions' attributes with '.' written '_' (as Prometheus exporters do). */
export type GenAiLabel = "gen_ai_operation_name" | "gen_ai_request_model";

export type GenerationStatus = "ok" | "error" | "cancelled";

/** The `endpoint` label of a request: its API family, never the raw path. */
const ENDPOINTS = new Set(["/v1/chat", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/responses", "/v1/conversations", "/v1/files", "/v1/batches"]);
const TOP_LEVEL = new Set(["/health", "/ready", "/metrics"]);
export const OTHER_ENDPOINT = "other";

/**
 * "/v1/chat/completions" → "/v1/chat", "/v1/responses/resp_1/input_items" →
 * "/v1/responses", "/admin/tenants/x" → "/admin", "/console/app.js" → "/console",
 * "/health" → "/health"; any
 * other path (unknown routes, scans, typos) → "other". The values are the ones
 * the dashboards already used; what changed is that nothing else gets in.
 */
export function endpointLabel(path: string): string {
  if (TOP_LEVEL.has(path)) return path;
  if (path === "/admin" || path.startsWith("/admin/")) return "/admin";
  if (path === "/console" || path.startsWith("/console/")) return "/console";
  const m = /^(\/v1\/[a-z_]+)(?:\/|$)/.exec(path);
  return m && ENDPOINTS.has(m[1]!) ? m[1]! : OTHER_ENDPOINT;
}

/** Drops every series labelled with `tenantId` (a deleted tenant must not stay listed on /metrics). */
export async function forgetTenant(metrics: Metrics, tenantId: string): Promise<void> {
  const perTenant = [metrics.promptTokens, metrics.completionTokens, metrics.cachedTokens, metrics.generations, metrics.rejections] as const;
  for (const metric of perTenant) {
    const { values } = await metric.get();
    for (const v of values) if (v.labels.tenant === tenantId) (metric as Counter<string>).remove(v.labels as Record<string, string>);
  }
  metrics.queueSeconds.remove({ tenant: tenantId });
}

/**
 * Renders the registry, one rendering at a time: scrapes that arrive while one
 * is being rendered share its text, so a client scraping in a loop costs at
 * most one rendering (and one stats round trip per worker) at a time.
 */
export function metricsRenderer(registry: Registry): () => Promise<string> {
  let rendering: Promise<string> | null = null;
  return () => (rendering ??= registry.metrics().finally(() => (rendering = null)));
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "llamux_process_" });
  return {
    registry,
    requests: new Counter({
      name: "llamux_requests_total",
      help: "HTTP requests by endpoint and status",
      labelNames: ["endpoint", "status"],
      registers: [registry],
    }),
    promptTokens: new Counter({ name: "llamux_prompt_tokens_total", help: "Prompt tokens processed", labelNames: ["model", "tenant"], registers: [registry] }),
    completionTokens: new Counter({
      name: "llamux_completion_tokens_total",
      help: "Completion tokens generated",
      labelNames: ["model", "tenant"],
      registers: [registry],
    }),
    cachedTokens: new Counter({
      name: "llamux_cached_tokens_total",
      help: "Prompt tokens served from a slot's KV cache",
      labelNames: ["model", "tenant"],
      registers: [registry],
    }),
    generations: new Counter({
      name: "llamux_generations_total",
      help: "Generations (one per choice) ended, by model, tenant, status (ok, error, cancelled) and finish_reason (none without a finish)",
      labelNames: ["model", "tenant", "status", "finish_reason"],
      registers: [registry],
    }),
    rejections: new Counter({
      name: "llamux_rejections_total",
      help: "Requests refused or shed before they ran (quota, rate limit, queue caps, queue timeout), by tenant and reason",
      labelNames: ["tenant", "reason"],
      registers: [registry],
    }),
    ttftSeconds: new Histogram({
      name: "llamux_time_to_first_token_seconds",
      help: "From request arrival to the first generated output",
      labelNames: ["model"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    itlSeconds: new Histogram({
      name: "llamux_inter_token_latency_seconds",
      help: "Between consecutive outputs of one stream",
      labelNames: ["model"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    prefillSeconds: new Histogram({
      name: "llamux_prefill_seconds",
      help: "From admission to a KV slot to the first sampled token",
      labelNames: ["model"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    queueSeconds: new Histogram({
      name: "llamux_queue_seconds",
      help: "Time a request waited for a KV slot",
      labelNames: ["tenant"],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    genAi: {
      // Buckets as the GenAI semantic conventions advise for each metric.
      timeToFirstToken: new Histogram({
        name: "gen_ai_server_time_to_first_token_seconds",
        help: "gen_ai.server.time_to_first_token: time to generate the first token of a successful request",
        labelNames: ["gen_ai_operation_name", "gen_ai_request_model"],
        buckets: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0],
        registers: [registry],
      }),
      timePerOutputToken: new Histogram({
        name: "gen_ai_server_time_per_output_token_seconds",
        help: "gen_ai.server.time_per_output_token: time per output token after the first, per successful request",
        labelNames: ["gen_ai_operation_name", "gen_ai_request_model"],
        buckets: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5],
        registers: [registry],
      }),
      requestDuration: new Histogram({
        name: "gen_ai_server_request_duration_seconds",
        help: "gen_ai.server.request.duration: generative AI server request duration (time to last byte or error)",
        labelNames: ["gen_ai_operation_name", "gen_ai_request_model", "error_type"],
        buckets: [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92],
        registers: [registry],
      }),
    },
    requestSeconds: new Histogram({
      name: "llamux_request_duration_seconds",
      help: "End-to-end HTTP request latency",
      labelNames: ["endpoint"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [registry],
    }),
  };
}

/**
 * Engine gauges and counters of every served model (label `model`), read from
 * the workers when Prometheus scrapes (one stats round trip per worker per
 * scrape, nothing on the token path), and worker restarts.
 */
export function bindEngineMetrics(metrics: Metrics, engines: ReadonlyArray<{ id: string; engine: EngineClient }>): void {
  const registers = [metrics.registry];
  type Stats = NonNullable<Awaited<ReturnType<EngineClient["stats"]>>>;
  // Gauges collected together in one scrape share one stats round trip per worker.
  let pending: Promise<Array<{ id: string; stats: Stats | null }>> | null = null;
  const stats = () => (pending ??= Promise.all(engines.map(async ({ id, engine }) => ({ id, stats: await engine.stats() }))).finally(() => (pending = null)));
  const labelNames = ["model"] as const;
  const gauge = (name: string, help: string, read: (s: Stats) => number) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        for (const { id, stats: s } of await stats()) if (s) this.set({ model: id }, read(s));
      },
    });
  gauge("llamux_requests_running", "Requests holding a KV slot", (s) => s.running);
  gauge("llamux_requests_waiting", "Requests waiting for a KV slot", (s) => s.waiting);
  gauge("llamux_slots_busy", "KV slots serving a request", (s) => s.slotsBusy);
  gauge("llamux_slots_idle", "KV slots free (their cache kept for prefix reuse)", (s) => s.slotsIdle);
  gauge("llamux_kv_cells_used", "KV cache cells holding tokens, over all slots", (s) => s.kvCellsUsed);
  // The Gateway API Inference Extension's KVCacheUtilization (vLLM's
  // vllm:kv_cache_usage_perc), a fraction 0..1: cells held by slots serving a
  // request over every slot's context. llamux_requests_waiting and
  // llamux_requests_running are its TotalQueuedRequests and TotalRunningRequests.
  new Gauge({
    name: "llamux_kv_cache_usage_ratio",
    help: "KV cache in use by running requests, 0..1: their slots' cells over all slots' context (idle slots' cached prefixes count as free; they are evicted on demand)",
    labelNames,
    registers,
    async collect() {
      const all = await stats();
      for (const [i, { id, stats: s }] of all.entries()) {
        const info = engines[i]!.engine.model;
        if (!s || !info) continue;
        const capacity = info.slots * info.contextPerSlot;
        if (capacity > 0) this.set({ model: id }, Math.min(1, (s.kvCellsBusy ?? s.kvCellsUsed) / capacity));
      }
    },
  });
  gauge("llamux_kv_saved_states", "Evicted slots' KV states saved on disk (--kv-cache-dir)", (s) => s.kv?.states ?? 0);
  gauge("llamux_kv_saved_bytes", "Bytes of the saved KV states on disk", (s) => s.kv?.bytes ?? 0);
  // Counted by the worker: like any counter, they start again from 0 when it restarts.
  const counter = (name: string, help: string, read: (s: Stats) => number) =>
    new Counter({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        for (const { id, stats: s } of await stats()) {
          if (!s) continue; // a worker that is not up keeps its last value
          this.remove({ model: id });
          this.inc({ model: id }, read(s));
        }
      },
    });
  counter("llamux_prefilled_tokens_total", "Prompt tokens the engine evaluated (cached, restored and copied ones excluded)", (s) => s.prefilledTokens);
  counter("llamux_prefix_hits_total", "Requests admitted with part of their prompt already cached (warm in a slot or restored)", (s) => s.prefixHits);
  counter("llamux_kv_states_saved_total", "KV states written to disk when their slot was evicted", (s) => s.kv?.saved ?? 0);
  counter("llamux_kv_states_restored_total", "Saved KV states loaded back into a slot instead of recomputing the prefix", (s) => s.kv?.restored ?? 0);
  counter("llamux_kv_states_discarded_total", "Saved KV states found corrupt, foreign or unloadable, deleted and recomputed", (s) => s.kv?.discarded ?? 0);
  counter("llamux_engine_steps_total", "Engine steps: one llama.cpp decode each, every running request advanced in it", (s) => s.steps);
  new Counter({
    name: "llamux_engine_loop_seconds_total",
    help: "Engine loop time by phase: wait (coalescing on purpose), admit (planning, slots, KV-store saves and restores), step (decode, sampling, per-token work), emit (tokens to the front)",
    labelNames: ["model", "phase"],
    registers,
    async collect() {
      for (const { id, stats: s } of await stats()) {
        if (!s) continue;
        for (const [phase, seconds] of Object.entries(s.loopSeconds)) {
          this.remove({ model: id, phase });
          this.inc({ model: id, phase }, seconds);
        }
      }
    },
  });
  const restarts = new Counter({ name: "llamux_engine_restarts_total", help: "Engine worker restarts after a crash", labelNames, registers });
  for (const { id, engine } of engines) {
    restarts.inc({ model: id }, 0); // every model's series exists from the start
    engine.on("restart", () => restarts.inc({ model: id }));
  }
}
