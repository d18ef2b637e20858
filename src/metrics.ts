// Prometheus metrics (prom-client). One registry per server instance, so
// tests can run several servers in one process without clashing.
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  registry: Registry;
  requests: Counter<"endpoint" | "status">;
  promptTokens: Counter<"model" | "tenant">;
  completionTokens: Counter<"model" | "tenant">;
  cachedTokens: Counter<"model" | "tenant">;
  requestSeconds: Histogram<"endpoint">;
  /** Generation requests that the engine completed, per tenant. */
  tenantRequests: Counter<"tenant" | "model">;
  /** Requests refused before the engine: quota, rate limit, queue cap. */
  rejections: Counter<"tenant" | "reason">;
  /** Time a request waited for a KV slot. */
  queueSeconds: Histogram<"tenant">;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "llamux_process_" });
  return {
    registry,
    requests: new Counter({ name: "llamux_requests_total", help: "HTTP requests by endpoint and status", labelNames: ["endpoint", "status"], registers: [registry] }),
    promptTokens: new Counter({ name: "llamux_prompt_tokens_total", help: "Prompt tokens processed", labelNames: ["model", "tenant"], registers: [registry] }),
    completionTokens: new Counter({ name: "llamux_completion_tokens_total", help: "Completion tokens generated", labelNames: ["model", "tenant"], registers: [registry] }),
    cachedTokens: new Counter({ name: "llamux_cached_tokens_total", help: "Prompt tokens served from a slot's KV cache", labelNames: ["model", "tenant"], registers: [registry] }),
    tenantRequests: new Counter({ name: "llamux_tenant_requests_total", help: "Generation requests completed, by tenant and model", labelNames: ["tenant", "model"], registers: [registry] }),
    rejections: new Counter({ name: "llamux_rejections_total", help: "Requests refused before reaching the engine, by tenant and reason", labelNames: ["tenant", "reason"], registers: [registry] }),
    queueSeconds: new Histogram({ name: "llamux_queue_seconds", help: "Time a request waited for a KV slot", labelNames: ["tenant"], buckets: [0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry] }),
    requestSeconds: new Histogram({ name: "llamux_request_duration_seconds", help: "End-to-end HTTP request latency", labelNames: ["endpoint"], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [registry] }),
  };
}
