// createApp builds the Express app and never listens: main/server listen, and
// tests drive the real app on 127.0.0.1:0.
import type { Tracer } from "@opentelemetry/api";
import express, { type Express } from "express";
import { adminRoute } from "./admin/route.js";
import { consoleRoute } from "./console/route.js";
import { errorHandler, notFoundHandler } from "./errors.js";
import type { Logger } from "./logger.js";
import { endpointLabel, metricsRenderer, type Metrics } from "./metrics.js";
import { jsonBody, type JsonParsePool } from "./middleware/jsonBody.js";
import { MAX_JSON_DEPTH } from "./middleware/jsonLimits.js";
import { MAX_LOGIT_BIAS_ENTRIES } from "../engine/index.js";
import { authenticate, requireAllowedModel, requireMetricsAccess, type OnRefused } from "./middleware/auth.js";
import { requireJsonBody, requireLoopbackHost } from "./middleware/security.js";
import { closeConnectionsWhenDraining, drainGate, type InflightRequests } from "./middleware/drain.js";
import { requestLog } from "./middleware/requestLog.js";
import { traceRequests } from "./middleware/tracing.js";
import { chatRoute } from "./openai/chat/route.js";
import { completionsRoute } from "./openai/completions/route.js";
import { embeddingsRoute } from "./openai/embeddings/route.js";
import type { RouteDeps } from "./openai/context.js";
import { modelsRoute } from "./openai/models/route.js";
import { conversationsRoute } from "./openai/conversations/route.js";
import { responsesRoute } from "./openai/responses/route.js";
import type { BackgroundResponses } from "./openai/responses/background.js";
import type { ConversationStore } from "./store/conversationStore.js";
import type { Quota } from "./quota/quota.js";
import { modelState, type ServedModels } from "./servedModels.js";
import type { TenantRegistry } from "./tenants/registry.js";
import { authenticateDispatch, batchClass } from "./batch/dispatch.js";
import { batchesRoute } from "./batch/route.js";
import type { BatchStore } from "./batch/batchStore.js";
import type { BatchRunner } from "./batch/runner.js";
import type { FileStore } from "./files/fileStore.js";
import { filesRoute } from "./files/route.js";
import type { AuditLog } from "./audit/auditLog.js";
import { usageReportRoute } from "./admin/usage.js";
import type { UsageLog } from "./usage/usageLog.js";

/** The Batch API's parts (files, batches, the runner that serves their lines). */
export interface BatchDeps {
  files: FileStore;
  batches: BatchStore;
  runner: BatchRunner;
  /** Vouches for the lines the runner sends to this server (dispatch.ts). */
  dispatchSecret: string;
  maxFileBytes: number;
}

export interface AppDeps {
  /** Every served model with its engine, queue and names. */
  models: ServedModels;
  metrics: Metrics;
  log: Logger;
  maxBodyBytes: number;
  version: string;
  /** False once the server is draining: new work is refused. */
  accepting: () => boolean;
  /** Counts /v1 requests in flight, so a drain knows when they are done. */
  inflight: InflightRequests;
  /** Log each request's messages/prompt at debug level (--log-content). */
  logContent: boolean;
  /** Multi-tenant mode: every /v1 request needs a key of one of these tenants. Null: single-tenant, no auth. */
  tenants: TenantRegistry | null;
  /** LLAMUX_ADMIN_KEY; null: no /admin routes at all (404). Requires `tenants`. */
  adminKey: string | null;
  quota: Quota;
  /** Stored responses and conversations (/v1/responses, /v1/conversations). */
  conversations: ConversationStore;
  /** Background responses running in this process (/v1/responses with background: true). */
  background: BackgroundResponses;
  /** --queue-timeout-ms; 0: never. */
  queueTimeoutMs: number;
  /** LLAMUX_METRICS_TOKEN: required on /metrics when set (the admin key works too); null: unset. */
  metricsToken: string | null;
  /**
   * The --host of a loopback listener: requests must then be addressed to a
   * loopback name or this host (DNS rebinding); null: not on loopback, no check.
   */
  loopbackHost: string | null;
  /** Parses large /v1 bodies off the event loop (the caller closes it); absent: every body is parsed inline. */
  jsonParser?: JsonParsePool | null;
  /** Traces each request (a SERVER span continuing its traceparent); absent: not traced. */
  tracer?: Tracer;
  /** The audit log (multi-tenant mode): admin actions and refused authentications; absent: not audited. */
  audit?: AuditLog | null;
  /** Files and batches; null: /v1/files and /v1/batches are not served. */
  batch?: BatchDeps | null;
  /** Per-request usage records: written by every route that returns usage, read by the usage and cost reports; absent: none kept. */
  usageLog?: UsageLog | null;
}

export function createApp(deps: AppDeps): Express {
  if (deps.adminKey !== null && deps.tenants === null) throw new Error("an admin key needs a tenant registry");
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  const startedAtSeconds = Math.floor(Date.now() / 1000);

  const routeDeps: RouteDeps = {
    models: deps.models,
    metrics: deps.metrics,
    fingerprint: `fp_llamux_${deps.version}`,
    quota: deps.quota,
    queueTimeoutMs: deps.queueTimeoutMs,
    usageLog: deps.usageLog ?? null,
  };

  // First, so every request is traced (when tracing is on), and every response
  // (errors included) carries x-request-id and is logged once, with its trace id.
  if (deps.tracer) app.use(traceRequests(deps.tracer));
  app.use(requestLog({ log: deps.log, logContent: deps.logContent }));
  app.use(closeConnectionsWhenDraining(deps.accepting));
  app.use((req, res, next) => {
    // A bounded label: unknown paths fold into one value (see endpointLabel).
    const endpoint = endpointLabel(req.path);
    const stop = deps.metrics.requestSeconds.startTimer({ endpoint });
    // "close" fires once for every response, sent or not: one whose client
    // left before its end counts as 499 (nginx's "client closed request").
    res.once("close", () => {
      stop();
      deps.metrics.requests.inc({ endpoint, status: res.writableFinished ? String(res.statusCode) : "499" });
    });
    next();
  });
  app.use(requireLoopbackHost(deps.loopbackHost));

  app.get("/health", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/ready", (_req, res) => {
    // Ready when every configured model serves: a model that failed to load
    // keeps the instance out of a load balancer until its configuration is fixed.
    const ready = deps.models.ready && deps.accepting();
    const states = Object.fromEntries(deps.models.all.map((m) => [m.id, modelState(m)]));
    const notReady = deps.models.all.find((m) => !m.engine.ready);
    const status = ready ? "ready" : !deps.accepting() ? "draining" : notReady ? modelState(notReady) : "ready";
    res.status(ready ? 200 : 503).json({ status, models: states });
  });
  const renderMetrics = metricsRenderer(deps.metrics.registry);
  const audit = deps.audit ?? null;
  const onRefused: OnRefused = audit ? (req, res, refusal) => audit.refused(req, res, refusal) : () => {};
  app.get(
    "/metrics",
    requireMetricsAccess({ token: deps.metricsToken, adminKey: deps.adminKey, multiTenant: deps.tenants !== null }, onRefused),
    async (_req, res) => {
      res.setHeader("content-type", deps.metrics.registry.contentType);
      res.send(await renderMetrics());
    },
  );

  app.use("/v1", drainGate(deps.accepting, deps.inflight));
  // Authenticate before the body is read: an unauthenticated caller costs no parsing.
  const auth = authenticate(deps.tenants, onRefused);
  app.use("/v1", deps.batch ? authenticateDispatch(deps.batch.dispatchSecret, deps.tenants, auth, onRefused) : auth);
  // OpenAI sends its rate-limit headers on every response; generation routes
  // overwrite them with the values after their own reservation.
  // A shared quota that cannot answer sends none (the request goes on; a
  // generation route then says why it cannot be admitted).
  app.use("/v1", (_req, res, next) => {
    if (!res.locals.tenant) return next();
    deps.quota
      .headers(res.locals.tenant)
      .catch(() => ({}))
      .then((h) => {
        res.set(h);
        next();
      })
      .catch(next);
  });
  // Uploads are multipart, streamed to disk by the files route itself: before the JSON-only rule and parser.
  if (deps.batch) app.use(filesRoute(deps.batch.files, { maxFileBytes: deps.batch.maxFileBytes }));
  // Only JSON bodies: a text/plain or form POST is what a web page can send cross-site without a preflight.
  app.use("/v1", requireJsonBody());
  // verify: invalid UTF-8 and over-deep nesting are 400s before JSON.parse runs.
  app.use(
    "/v1",
    jsonBody({
      limit: deps.maxBodyBytes,
      limits: { maxDepth: MAX_JSON_DEPTH, maxLogitBiasEntries: MAX_LOGIT_BIAS_ENTRIES },
      pool: deps.jsonParser ?? null,
      tenantOf: (res) => (res.locals.tenant as { id: string } | undefined)?.id ?? "",
    }),
  );
  app.use(
    "/v1",
    requireAllowedModel((name) => deps.models.namesOf(name)),
  );
  // A Batch API line runs from here on in the engine's batch class.
  app.use("/v1", batchClass);
  if (deps.adminKey !== null && deps.tenants !== null) {
    app.use("/admin", adminRoute({ tenants: deps.tenants, adminKey: deps.adminKey, slots: () => deps.models.minSlots(), audit, usage: deps.usageLog ?? null }));
    // The operator's console: static files that call /admin, /metrics and /ready with the admin key.
    app.use(consoleRoute());
  }
  // A tenant's own usage and costs: the key's tenant, nothing else.
  if (deps.usageLog)
    app.use(
      "/v1",
      usageReportRoute(deps.usageLog, (res) => res.locals.tenant.id),
    );
  app.use(chatRoute(routeDeps));
  app.use(completionsRoute(routeDeps));
  app.use(embeddingsRoute(routeDeps));
  app.use(responsesRoute(routeDeps, deps.conversations, deps.background));
  app.use(conversationsRoute(deps.conversations));
  if (deps.batch) app.use(batchesRoute(deps.batch.batches, deps.batch.files, deps.batch.runner));
  app.use(modelsRoute(routeDeps, startedAtSeconds));
  app.use(notFoundHandler);
  app.use(errorHandler((err) => deps.log.error({ err }, "unhandled error")));
  return app;
}
