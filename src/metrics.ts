// Prometheus metrics (prom-client). One registry per server instance, so
// tests can run several servers in one process without clashing.
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  registry: Registry;
  requests: Counter<"endpoint" | "status">;
  promptTokens: Counter<"model">;
  completionTokens: Counter<"model">;
  cachedTokens: Counter<"model">;
  requestSeconds: Histogram<"endpoint">;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "llamux_process_" });
  return {
    registry,
    requests: new Counter({ name: "llamux_requests_total", help: "HTTP requests by endpoint and status", labelNames: ["endpoint", "status"], registers: [registry] }),
    promptTokens: new Counter({ name: "llamux_prompt_tokens_total", help: "Prompt tokens processed", labelNames: ["model"], registers: [registry] }),
    completionTokens: new Counter({ name: "llamux_completion_tokens_total", help: "Completion tokens generated", labelNames: ["model"], registers: [registry] }),
    cachedTokens: new Counter({ name: "llamux_cached_tokens_total", help: "Prompt tokens served from a slot's KV cache", labelNames: ["model"], registers: [registry] }),
    requestSeconds: new Histogram({ name: "llamux_request_duration_seconds", help: "End-to-end HTTP request latency", labelNames: ["endpoint"], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [registry] }),
  };
}
