// One SERVER span per HTTP request, continuing the caller's W3C traceparent,
// named by route template (never the raw path: that is what a client
// controls) and ended when the response ends or the client goes away. Its
// context is active for the rest of the chain, so the generation code adds
// the GenAI attributes to it and hands it to the engine worker, whose own
// spans (waiting for a slot, reading the prompt, decoding) join the trace.
import { context, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from "@opentelemetry/api";
import type { RequestHandler } from "express";
import { contextFrom } from "../../telemetry/tracing.js";
import { endpointLabel } from "../metrics.js";

declare global {
  namespace Express {
    interface Locals {
      /** The request's trace id when it is traced (for the access log line). */
      traceId?: string;
    }
  }
}

export function traceRequests(tracer: Tracer): RequestHandler {
  return (req, res, next) => {
    const route = endpointLabel(req.path);
    const span: Span = tracer.startSpan(
      `${req.method} ${route}`,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": req.method, "http.route": route, "url.scheme": "http" } },
      contextFrom(req.headers),
    );
    if (span.isRecording()) res.locals.traceId = span.spanContext().traceId;
    res.once("close", () => {
      // The matched route's template once routing is done (bounded: the routes
      // llamux declares); unmatched paths keep the folded label above.
      const template = req.route?.path;
      if (typeof template === "string") {
        span.updateName(`${req.method} ${req.baseUrl}${template}`);
        span.setAttribute("http.route", `${req.baseUrl}${template}`);
      }
      span.setAttribute("http.response.status_code", res.statusCode);
      const tenant = res.locals.tenant?.id;
      if (tenant !== undefined) span.setAttribute("llamux.tenant.id", tenant);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      if (!res.writableFinished) span.setAttribute("llamux.client_left", true);
      span.end();
    });
    context.with(trace.setSpan(context.active(), span), next);
  };
}
