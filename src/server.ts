// A running llamux server: stores, engine workers, HTTP listener, agent. Each
// resource pushes its teardown on one stack (src/disposers.ts) as it is
// acquired, and a failed start and close() both run that stack in reverse: the
// stores open first and close last, so no request ever sees them closed; HTTP
// listens before the workers start (so /health answers while the model loads)
// and stops before them (so draining requests still reach the workers).
// close() drains: new /v1 requests get 503 while those in flight run on for up
// to --drain-timeout-ms, then the listener closes and whatever is left is cut.
// With --agent-port, an HAProxy agent (src/cluster/agent.ts) answers from the
// listen on (drain while loading and draining) until the drain is over. With
// --database-url the stores are PostgreSQL's (src/store/postgres): its pool
// opens before everything and closes after. Used by `llamux serve` and by the
// integration tests.
import http, { type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { createRequire } from "node:module";
import { EngineClient, MAX_LOGIT_BIAS_ENTRIES, type ModelInfo, type WorkerOptions } from "../engine/index.js";
import { countTextTokens, freeEncoder } from "./quota/estimate.js";
import { QuotaLedger } from "./quota/ledger.js";
import { LocalQuota, type Quota } from "./quota/quota.js";
import { createRedisClient, whenReady } from "./quota/redis/client.js";
import { RedisQuota } from "./quota/redis/redisQuota.js";
import { ServerQueue } from "./quota/serverQueue.js";
import { SqliteUsageStore, type UsageStore } from "./quota/usageStore.js";
import { engineTenant, hasTokenLimit, tenantPolicy } from "./tenants/types.js";
import { resolveModel } from "../models/resolve.js";
import { createApp } from "./app.js";
import { ConfigError, readServeSecrets, type ModelConfig, type ServeConfig, type ServeSecrets } from "./config.js";
import type { Logger } from "./logger.js";
import { bindEngineMetrics, createMetrics, forgetTenant, type Metrics } from "./metrics.js";
import { isLoopbackHost } from "./middleware/security.js";
import { looseDirWarning, makePrivateDir, tightenOwnDir } from "./store/sqlite.js";
import { InflightRequests } from "./middleware/drain.js";
import { JsonParsePool } from "./middleware/jsonBody.js";
import { startTracing } from "../telemetry/tracing.js";
import { MAX_JSON_DEPTH } from "./middleware/jsonLimits.js";
import { openTenants } from "./tenants/openTenants.js";
import type { TenantRegistry } from "./tenants/registry.js";
import type { SqliteTenantStore } from "./tenants/store.js";
import type { ConversationStore } from "./store/conversationStore.js";
import { forgetDeletedTenants } from "./store/forgetDeletedTenants.js";
import { SqliteConversationStore } from "./store/sqliteConversationStore.js";
import { bindDatabaseMetrics } from "./store/postgres/metrics.js";
import { openPostgres, type PostgresState } from "./store/postgres/index.js";
import { openBackgroundResponses } from "./openai/responses/openBackground.js";
import { modelState, ServedModels, type ServedModel } from "./servedModels.js";
import { startAgent, type AgentServer, type ReplicaLoad } from "./cluster/agent.js";
import { DisposerStack } from "./disposers.js";

import { SqliteBatchStore } from "./batch/sqliteBatchStore.js";
import { SqliteUsageLog } from "./usage/usageLog.js";
import { SqliteFileStore } from "./files/sqliteFileStore.js";
import { AuditLog } from "./audit/auditLog.js";
import { SqliteAuditStore } from "./audit/sqliteAuditStore.js";
import { PgAuditStore } from "./store/postgres/auditStore.js";
import { PgBatchStore } from "./store/postgres/batchStore.js";
import { PgFileStore } from "./store/postgres/fileStore.js";
import { BatchRunner } from "./batch/runner.js";
import { dispatchLine, newDispatchSecret } from "./batch/dispatch.js";

const pkg = createRequire(import.meta.url)("../../package.json") as { version: string };
export const VERSION = pkg.version;

export interface RunningServer {
  url: string;
  /** The first configured model's engine and details (the only ones in single-model mode). */
  engine: EngineClient;
  model: ModelInfo;
  /** Every served model. */
  models: ServedModels;
  /** Tenants and keys; null in single-tenant mode (no auth). */
  tenants: TenantRegistry | null;
  /** The database under --data-dir (its `db` handle is shared by other stores); null in single-tenant mode and with --database-url. */
  store: SqliteTenantStore | null;
  /** Stored responses and conversations: in the same database file (in both modes), or in PostgreSQL with --database-url. */
  conversations: ConversationStore;
  /** The shared PostgreSQL state with --database-url; null without. */
  postgres: PostgresState | null;
  /** The HAProxy agent-check port (--agent-port); null when there is no agent. */
  agentPort: number | null;
  /**
   * Drains and stops: refuses new requests, waits up to --drain-timeout-ms for
   * those in flight, closes the listener and every connection left, stops the
   * worker, then closes the store. Calling it again returns the same promise.
   */
  close(): Promise<void>;
}

export { isMultiTenant } from "./tenants/openTenants.js";

/** Keeps the engine's fairness policies and the quota ledger in step with the tenant registry. */
function watchTenants(tenants: TenantRegistry, models: ServedModels, quota: Quota, metrics: Metrics, log: Logger): () => void {
  const apply = () => {
    const all = tenants.list().map((r) => r.tenant);
    for (const m of models.all) {
      // Before the policies (which may throw): a deleted tenant's KV cache,
      // in every model's slots and on disk, goes with it.
      m.engine.retainTenants(all.map(engineTenant));
      try {
        m.engine.setTenantPolicies(all.map(tenantPolicy));
      } catch (err) {
        // The previous policies stay in force; the admin sees why in the log.
        log.error({ err: (err as Error).message, model: m.id }, "tenant scheduling policies rejected");
      }
    }
    quota.retain(all.map((t) => t.id)).catch((err: unknown) => log.error({ err }, "dropping deleted tenants' quota counters failed"));
    // The token estimate (QuotaGate.open) loads tiktoken's tokenizer, about
    // 60 MiB and 0.4 s: now, rather than in the first request, but only once
    // some tenant has a token limit to check it against.
    if (all.some((t) => hasTokenLimit(t.limits))) countTextTokens("warm");
  };
  apply();
  return tenants.onChange((change) => {
    if (change.type === "deleted") {
      quota.forget(change.tenantId).catch((err: unknown) => log.error({ err, tenant: change.tenantId }, "dropping a deleted tenant's quota counters failed"));
      // /metrics must not keep listing (and counting) a tenant that is gone.
      forgetTenant(metrics, change.tenantId).catch((err: unknown) => log.error({ err, tenant: change.tenantId }, "dropping a deleted tenant's metrics failed"));
    }
    apply();
  });
}

export async function startServer(config: ServeConfig, log: Logger, secrets: ServeSecrets = readServeSecrets()): Promise<RunningServer> {
  // Every resource below pushes its teardown as it is acquired; a failed start
  // and close() run the same stack in reverse (src/disposers.ts).
  const stack = new DisposerStack((name, err) => log.error({ err, resource: name }, "closing failed; the rest of the shutdown goes on"));
  try {
    return await startServing(config, log, secrets, stack);
  } catch (err) {
    await stack.disposeAll();
    throw err;
  }
}

/** Stored responses and conversations: opened after the tenants, closed before them. */
function conversationOptions(config: ServeConfig, log: Logger) {
  return {
    responseTtlSeconds: config.responseTtlDays * 24 * 60 * 60,
    onPurge: (outcome: { deleted: number } | { error: unknown }) => {
      if ("error" in outcome) log.error({ err: outcome.error }, "purging expired responses failed");
      else log.info({ deleted: outcome.deleted, responseTtlDays: config.responseTtlDays }, "purged expired responses");
    },
  };
}

async function startServing(config: ServeConfig, log: Logger, secrets: ServeSecrets, stack: DisposerStack): Promise<RunningServer> {
  // Off (a no-op tracer) unless the OTEL_* environment asks for traces; flushed last.
  const tracing = await startTracing("front", VERSION);
  stack.push("tracing", () => tracing.shutdown());
  const pg = config.databaseUrl
    ? await openPostgres({ url: config.databaseUrl, poolSize: config.databasePoolSize, conversations: conversationOptions(config, log) }, log)
    : null;
  if (pg) stack.push("postgres", () => pg.close());
  const multi = await openTenants(config, secrets, log, pg);
  if (multi) stack.push("tenant store", () => multi.store.close());
  // PostgreSQL's conversation store is closed with its pool.
  const conversations: ConversationStore = pg ? pg.conversations : SqliteConversationStore.open(config.dataDir, conversationOptions(config, log));
  if (!pg) stack.push("conversation store", () => conversations.close());
  // An existing data directory keeps the mode its owner gave it (it may be shared with a group on purpose): said, not changed.
  const loose = looseDirWarning(config.dataDir);
  if (loose) log.warn(loose);
  // The Batch API: files and batches in the same database as the rest (shared
  // by every replica with --database-url, each batch run under a lease), lines
  // served through this server's own listener. Uploads land in a local temp dir first.
  const batchStores = pg
    ? { files: PgFileStore.open(pg.db, path.join(config.dataDir, "files", "tmp")), batches: new PgBatchStore(pg.db) }
    : { files: SqliteFileStore.open(config.dataDir), batches: SqliteBatchStore.open(config.dataDir) };
  stack.push("file store", () => batchStores.files.close());
  stack.push("batch store", () => batchStores.batches.close());
  if (multi?.watcher) stack.push("tenant change watcher", () => multi.watcher!.stop());

  const models = await createServedModels(config, log);
  let accepting = true;
  const inflight = new InflightRequests();
  const metrics = createMetrics();
  bindEngineMetrics(metrics, models.all);
  for (const m of tracing.enabled ? models.all : []) {
    m.engine.on("restart", (n: number) =>
      tracing.tracer.startSpan("llamux.engine.restart", { attributes: { "llamux.model": m.id, "llamux.engine.restarts": n } }).end(),
    );
  }
  if (pg) bindDatabaseMetrics(metrics.registry, pg.db, pg.usage);
  // tiktoken's encoder, loaded on first use by the quota estimate.
  stack.push("token estimator", () => freeEncoder());
  // Daily and lifetime usage live in the same database as the tenants, so a
  // budget survives restarts; single-tenant mode has no limits to keep.
  const usageStore = !multi ? null : pg ? pg.usage : new SqliteUsageStore(multi.sqlite!.db);
  const quota = await openQuota(config, usageStore, metrics, log);
  stack.push("quota", () => quota.close());
  // Per-request usage records (the usage and cost reports), in both modes: in llamux.db, or the shared database (closed with its pool).
  const usageLog = pg ? pg.usageLog : SqliteUsageLog.open(config.dataDir);
  if (!pg) stack.push("usage log", () => usageLog.close());
  if (multi) {
    stack.push("quota and engine tenant sync", watchTenants(multi.tenants, models, quota, metrics, log));
    stack.push("deleted tenant cleanup", forgetDeletedTenants(multi.tenants, conversations, log));
  }
  if (multi && secrets.metricsToken === null && secrets.adminKey === null) {
    log.warn(
      "/metrics is closed: it lists every tenant, so in multi-tenant mode it needs LLAMUX_METRICS_TOKEN (or LLAMUX_ADMIN_KEY) to be set and sent as a bearer token",
    );
  }
  // Stopped after the listener, so the requests a drain lets finish still reach them.
  stack.push("engine workers", () => Promise.all([...models.all].reverse().map((m) => m.engine.stop())).then(() => undefined));
  const jsonParser = new JsonParsePool({ maxDepth: MAX_JSON_DEPTH, maxLogitBiasEntries: MAX_LOGIT_BIAS_ENTRIES });
  stack.push("JSON parse worker", () => jsonParser.close());
  // SQLite or PostgreSQL (a lease per replica): see openBackground.ts. What a gone process left unfinished is failed now.
  // Closed before the engines stop: what still runs is stored failed (the server shut down), then a shared store's lease is given up.
  const background = await openBackgroundResponses(conversations, pg, log);
  stack.push("background responses", () => background.close());
  const dispatchSecret = newDispatchSecret();
  let baseUrl = "";
  const runner = new BatchRunner({
    ...batchStores,
    dispatch: (tenantId, endpoint, body, signal, batchId) => dispatchLine(baseUrl, dispatchSecret, tenantId, endpoint, body, signal, batchId),
    concurrency: config.batchConcurrency ?? models.all.reduce((n, m) => n + m.queue.slots, 0),
    log,
  });
  // Multi-tenant mode only: without keys there is nothing to refuse and no admin API.
  const audit = multi
    ? new AuditLog({
        store: pg ? new PgAuditStore(pg.db) : new SqliteAuditStore(multi.sqlite!.db),
        log,
        adminKey: secrets.adminKey,
        refusalLimits: { perAddress: config.auditRefusalsPerAddress, total: config.auditRefusalsTotal, windowMs: config.auditRefusalWindowMs },
      })
    : null;
  // Closed after the listener: the last refusal window's summary is written before the store closes.
  if (audit) stack.push("audit log", () => audit.close());
  const app = createApp({
    audit,
    tracer: tracing.enabled ? tracing.tracer : undefined,
    jsonParser,
    models,
    metrics,
    log,
    maxBodyBytes: config.maxBodyBytes,
    version: VERSION,
    accepting: () => accepting,
    inflight,
    logContent: config.logContent,
    tenants: multi?.tenants ?? null,
    adminKey: secrets.adminKey,
    conversations,
    background,
    quota,
    queueTimeoutMs: config.queueTimeoutMs,
    metricsToken: secrets.metricsToken,
    loopbackHost: isLoopbackHost(config.host) ? config.host : null,
    batch: { ...batchStores, runner, dispatchSecret, maxFileBytes: config.maxFileBytes },
    usageLog,
  });

  // Slow or silent clients cost a socket each, so every connection has a
  // deadline until its request has arrived: the head within headersTimeout
  // (a connection that sends nothing included), head and body within
  // requestTimeout; Node answers 408 and closes. Neither limits the response:
  // a request waiting for a slot or streaming for minutes is untouched. A head
  // over Node's 16 KiB limit gets 431 and a close. Node checks the deadlines
  // every connectionsCheckingInterval (30 s by default, far coarser than the
  // deadlines), so the interval follows the shorter deadline.
  const server: Server = http.createServer(
    {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      keepAliveTimeout: config.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(config.headersTimeoutMs / 4))),
    },
    app,
  );
  // Listen first so /health answers (and /ready says 503) while the model loads.
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  log.info({ url }, "listening");
  stack.push(
    "HTTP listener",
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  // The agent answers from now on, so a balancer hears "drain" while the models
  // load; it is closed after the drain, answering "drain" until then.
  let agentPort: number | null = null;
  if (config.agentPort !== null) {
    let agent: AgentServer;
    try {
      agent = await startAgent(config.host, config.agentPort, () => replicaLoad(models, accepting));
    } catch (err) {
      throw new ConfigError(`cannot listen for agent checks on ${config.host}:${config.agentPort}: ${(err as Error).message}`);
    }
    stack.push("agent check", () => agent.close());
    agentPort = agent.port;
    log.info({ host: config.host, port: agent.port }, "answering HAProxy agent checks");
  }
  // An unspecified address is reached on loopback.
  const dispatchHost = config.host === "0.0.0.0" ? "127.0.0.1" : config.host === "::" ? "::1" : config.host;
  baseUrl = `http://${dispatchHost.includes(":") ? `[${dispatchHost}]` : dispatchHost}:${port}`;

  await startEngines(models, log);
  // The listener stays open while draining, so a load balancer still reaches
  // /ready (503 "draining") and new /v1 requests get a retryable 503 rather
  // than a refused connection. Idle keep-alive sockets are closed at once (and
  // every response while draining says `connection: close`), so they never
  // hold the drain open; what counts is the /v1 requests in flight. The agent
  // (closed after this) answers "drain" throughout.
  stack.push("drain", async () => {
    server.closeIdleConnections();
    if (inflight.count > 0 && config.drainTimeoutMs > 0) {
      log.info({ inflight: inflight.count, drainTimeoutMs: config.drainTimeoutMs }, "draining in-flight requests");
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<"deadline">((resolve) => (timer = setTimeout(() => resolve("deadline"), config.drainTimeoutMs)));
      const outcome = await Promise.race([inflight.idle().then(() => "drained" as const), deadline]);
      clearTimeout(timer);
      if (outcome === "deadline")
        log.warn({ cut: inflight.count, drainTimeoutMs: config.drainTimeoutMs }, "drain deadline passed: cutting the requests still in flight");
    } else if (inflight.count > 0) {
      log.warn({ cut: inflight.count }, "drain timeout is 0: cutting the requests in flight");
    }
  });
  // Batches a previous run left unfinished go on. Stopped before the drain: the
  // lines in flight are cut, unrecorded, and the next start runs them again.
  stack.push("batch runner", () => runner.stop());
  await runner.start();
  // The first thing close() does: from here the agent answers "drain", the
  // balancer stops sending new requests and new /v1 requests get 503.
  stack.push("admission", () => {
    accepting = false;
  });
  let closing: Promise<void> | null = null;
  const first = models.all[0]!;
  log.info({ url, models: models.all.map((m) => m.id) }, "llamux ready");

  return {
    url,
    engine: first.engine,
    model: first.engine.model!,
    models,
    tenants: multi?.tenants ?? null,
    store: multi?.sqlite ?? null,
    conversations,
    postgres: pg,
    agentPort,
    close: () =>
      (closing ??= (async () => {
        await stack.disposeAll();
        log.info("llamux stopped");
      })()),
  };
}

/** What the agent check reports: each model's state and the front's own queue counts. */
function replicaLoad(models: ServedModels, accepting: boolean): ReplicaLoad {
  return {
    accepting,
    models: models.all.map((m) => ({
      state: modelState(m),
      slots: m.queue.slots,
      running: m.queue.running,
      waiting: m.queue.waiting,
      maxQueued: m.queue.maxQueued,
    })),
  };
}

/**
 * The tenants' quota books: in process (the default), or in the Redis every
 * replica shares (--redis-url). A Redis that does not answer at start is not
 * fatal: the replica starts in its fallback and switches over when it answers.
 */
async function openQuota(config: ServeConfig, store: UsageStore | null, metrics: Metrics, log: Logger): Promise<Quota> {
  if (config.redisUrl === null) return new LocalQuota(await QuotaLedger.open({ store }));
  const redis = createRedisClient({ url: config.redisUrl, timeoutMs: config.redisTimeoutMs });
  const where = redisAddress(config.redisUrl);
  const quota = new RedisQuota({
    redis,
    keyPrefix: config.redisKeyPrefix,
    store,
    fallback: config.redisFallback,
    replicas: config.redisReplicas,
    leaseMs: config.redisLeaseMs,
    log,
    registry: metrics.registry,
    ownsClient: true,
  });
  try {
    await whenReady(redis, config.redisTimeoutMs);
    await quota.tick();
  } catch (err) {
    // Not on the disposer stack yet: its connection is closed here.
    await quota.close();
    throw err;
  }
  log.info({ redis: where, mode: quota.currentMode, fallback: config.redisFallback, leaseMs: config.redisLeaseMs }, "quotas shared through Redis");
  return quota;
}

/** host:port of a Redis URL, without the password it may carry (for logs). */
function redisAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 6379}`;
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * One engine worker (not started yet) per configured model. Files are resolved
 * first, so a wrong path fails the start with a clear error before any worker
 * loads anything. With several models, each keeps its saved KV states in its
 * own subdirectory: a store evicts what it does not recognise.
 */
async function createServedModels(config: ServeConfig, log: Logger): Promise<ServedModels> {
  const kvCacheDir = path.resolve(config.kvCacheDir ?? path.join(config.dataDir, "kv-cache"));
  const several = config.models.length > 1;
  // The default KV directory is llamux's own (its name, under the data dir): one
  // an earlier version created 0755 is tightened. One given with --kv-cache-dir
  // is the user's and keeps its mode.
  const ownKvDir = config.kvCacheDir === null;
  const served: ServedModel[] = [];
  for (const mc of config.models) {
    const resolved = await resolveModel(mc.model, { modelsDir: config.modelsDir, cacheDir: config.cacheDir });
    if (resolved.generated) {
      log.warn(
        { model: resolved.path },
        "NO MODEL GIVEN: serving a generated synthetic model with RANDOM WEIGHTS. Its output is gibberish; it exists for smoke tests. Pass --model to serve a real GGUF.",
      );
    }
    const id = mc.id ?? resolved.id;
    const modelKvDir = several ? path.join(kvCacheDir, encodeURIComponent(id)) : kvCacheDir;
    // Saved KV states hold tenants' conversations: their directory is created
    // here, owner-only, before the worker would create it with the default mode.
    if (mc.kvCacheMaxBytes > 0) {
      if (ownKvDir) {
        tightenOwnDir(kvCacheDir);
        tightenOwnDir(modelKvDir);
      } else makePrivateDir(modelKvDir);
    }
    served.push({
      id,
      aliases: mc.aliases.filter((a) => a !== id),
      engine: new EngineClient({
        worker: workerOptions(mc, resolved.path, id, modelKvDir),
        log: (msg, fields) => log.info({ model: id, ...fields }, msg),
      }),
      queue: new ServerQueue({ slots: mc.slots, maxQueued: mc.maxQueued }),
      loadError: null,
      price: mc.price,
    });
  }
  try {
    return new ServedModels(served);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

function workerOptions(mc: ModelConfig, modelPath: string, modelId: string, kvCacheDir: string): WorkerOptions {
  return {
    modelPath,
    modelId,
    slots: mc.slots,
    contextPerSlot: mc.ctxPerSlot,
    threads: mc.threads,
    gpu: mc.gpu,
    chatTemplateFile: mc.chatTemplate,
    stepTokens: mc.stepTokens,
    coalesceMs: mc.coalesceMs,
    followUpMs: mc.followUpMs,
    kvCacheDir,
    kvCacheMaxBytes: mc.kvCacheMaxBytes,
  };
}

/**
 * Loads every model at once. One model alone must load or the start fails, as
 * ever; of several, one that fails to load is reported and answered with
 * model_not_loaded while the others serve, and the start fails only when none loads.
 */
async function startEngines(models: ServedModels, log: Logger): Promise<void> {
  const outcomes = await Promise.allSettled(
    models.all.map((m) => {
      log.info({ model: m.id, slots: m.queue.slots, aliases: m.aliases }, "loading model");
      return m.engine.start();
    }),
  );
  const failures = outcomes.flatMap((o, i) => (o.status === "rejected" ? [{ model: models.all[i]!, err: o.reason as Error }] : []));
  if (failures.length === models.all.length) throw failures[0]!.err;
  for (const { model, err } of failures) {
    model.loadError = err.message;
    log.error({ model: model.id, err: err.message }, "model failed to load: requests for it get model_not_loaded");
  }
  for (const m of models.all) {
    if (m.loadError !== null) continue;
    const info = m.engine.model!;
    log.info({ model: m.id, gpu: info.gpu, chatTemplate: info.chatTemplate, contextPerSlot: info.contextPerSlot, slots: info.slots }, "model ready");
    m.engine.on("restart", (n: number) => log.error({ model: m.id, restarts: n }, "engine worker restarted"));
  }
}
