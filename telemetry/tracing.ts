// OpenTelemetry tracing for both processes (the front and each engine
// worker), configured the standard way, by the OTEL_* environment variables:
// on when an OTLP endpoint is given (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or OTEL_TRACES_EXPORTER names otlp, and
// OTEL_SDK_DISABLED=true is not set; off otherwise. Off, nothing of the SDK is
// loaded and every tracer is the API's no-op one, so tracing costs nothing.
// The sampler (OTEL_TRACES_SAMPLER / _ARG, parent-based always-on by default),
// the exporter's endpoint, headers and timeouts, and the batch processor's
// delays are the SDK's own readings of the same variables.
import { context, propagation, trace, type Context, type Span, type Tracer } from "@opentelemetry/api";

export interface Tracing {
  /** False: nothing is exported, and callers may skip their tracing work altogether. */
  enabled: boolean;
  tracer: Tracer;
  /** Exports what is buffered and stops; idempotent. */
  shutdown(): Promise<void>;
}

/** Whether the environment asks for traces (see the header). */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "").split(",").map((e) => e.trim().toLowerCase());
  if (exporters.includes("none")) return false;
  return exporters.includes("otlp") || !!env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || !!env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
}

/** The no-op tracer, for when tracing is off (its spans record nothing and cost next to nothing). */
export const noTracing: Tracing = { enabled: false, tracer: trace.getTracer("llamux"), shutdown: async () => undefined };

/** This process's tracing, once started (childSpan starts its spans with its tracer). */
let current: Tracing = noTracing;

/**
 * A child of the active span, or null when no span records (tracing off, or a
 * request not sampled): callers build attributes only for a span they got, so
 * an untraced request allocates nothing here. The child is not made active.
 */
export function childSpan(name: string): Span | null {
  const parent = trace.getActiveSpan();
  if (!parent?.isRecording()) return null;
  return current.tracer.startSpan(name);
}

/**
 * Starts the SDK when the environment asks for it: a tracer provider with the
 * OTLP/HTTP exporter behind a batch processor, W3C trace-context propagation
 * and async-hooks context, registered as the process's global. `component`
 * names this process in the resource (service.name stays OTEL_SERVICE_NAME's,
 * default "llamux").
 */
export async function startTracing(component: "front" | "engine", version: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Tracing> {
  if (!tracingRequested(env)) return noTracing;
  const [{ NodeTracerProvider }, { BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes, detectResources, envDetector }] = await Promise.all([
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
  ]);
  const resource = resourceFromAttributes({
    "service.name": "llamux",
    ...(version ? { "service.version": version } : {}),
    "llamux.component": component,
  }).merge(detectResources({ detectors: [envDetector] }));
  const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())] });
  provider.register();
  let done: Promise<void> | null = null;
  current = {
    enabled: true,
    tracer: trace.getTracer("llamux", version),
    shutdown: () => (done ??= provider.shutdown().catch(() => undefined)),
  };
  return current;
}

/** The W3C traceparent (and tracestate) of `span`, to carry its context to another process; null when it records nothing. */
export function traceHeaders(span: Span): Record<string, string> | null {
  if (!span.isRecording()) return null;
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  return carrier.traceparent ? carrier : null;
}

/** The context a traceparent (and tracestate) carried from another process continues. */
export function contextFrom(headers: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(context.active(), headers);
}
