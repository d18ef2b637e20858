// Engine worker process entry: loads the model, runs the Engine, and speaks
// the IPC protocol with the front. Everything here can be rebuilt: the front
// restarts this process if it dies (a native abort inside llama.cpp, say).
import fs from "node:fs";
import type { LlamaContext } from "node-llama-cpp";
import { ChatTemplate } from "../models/chatTemplate.js";
import { loadModel, type LoadedModel } from "../models/load.js";
import { ENGINE_BATCHING } from "./batchOrder.js";
import { Embedder } from "./embedder.js";
import { Engine } from "./engine.js";
import { KvStateStore, modelIdentity } from "./kvStore.js";
import { RequestSpans, TracedStates, tracedSender } from "./requestSpans.js";
import { startTracing, type Tracing } from "../telemetry/tracing.js";
import { DEFAULT_FAIRNESS_COSTS, DEFAULT_FOLLOW_UP_MS, PROTOCOL_VERSION, type FromWorker, type ToWorker, type WorkerOptions } from "./protocol.js";

/** Time given to saving warm slots' KV states on a clean shutdown. */
const SAVE_ON_EXIT_BUDGET_MS = 2000;

function send(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}

async function main(): Promise<void> {
  const raw = process.env.LLAMUX_WORKER_OPTIONS;
  if (!raw || !process.send) throw new Error("engine worker must be started by the llamux front process");
  const opts = JSON.parse(raw) as WorkerOptions;

  let loaded: LoadedModel | null = null;
  let context: LlamaContext | null = null;
  let engine: Engine | null = null;
  let embedder: Embedder | null = null;
  let kv: KvStateStore | null = null;
  let tracing: Tracing | null = null;
  let spans: RequestSpans | null = null;
  let shuttingDown = false;

  // Reverse order of construction: engine and embedder (whose embedding
  // context, created on first use, is the newest), context, model, backend.
  const shutdown = async (code: number): Promise<never> => {
    if (!shuttingDown) {
      shuttingDown = true;
      await engine?.stop().catch(() => undefined);
      await embedder?.stop().catch(() => undefined);
      // Within the front's 5 s grace: a cache not written by then is only recomputed later.
      await engine?.saveWarmSlots(SAVE_ON_EXIT_BUDGET_MS).catch(() => undefined);
      await embedder?.dispose().catch(() => undefined);
      await context?.dispose().catch(() => undefined);
      await loaded?.model.dispose().catch(() => undefined);
      await loaded?.llama.dispose().catch(() => undefined);
      spans?.clear();
      await tracing?.shutdown();
    }
    process.exit(code);
  };

  process.on("message", (msg: ToWorker) => {
    if (msg.t === "shutdown") void shutdown(0);
    else if (!engine || !embedder) return;
    else if (msg.t === "submit") {
      spans?.submitted(msg.id, msg.req.tenant, msg.req.trace);
      engine.submit(msg.id, msg.req);
    } else if (msg.t === "embed") embedder.submit(msg.id, msg.req);
    else if (msg.t === "cancel") {
      if (!embedder.cancel(msg.id)) engine.cancel(msg.id);
    } else if (msg.t === "tenants") engine.setTenantPolicies(msg.policies);
    else if (msg.t === "retain_tenants") {
      const keep = new Set(msg.tenants);
      engine.retainTenants(keep);
      kv?.retain(keep);
    } else if (msg.t === "pause") engine.pause(msg.id);
    else if (msg.t === "resume") engine.resume(msg.id);
    else if (msg.t === "stats") send({ t: "stats", stats: engine.stats() });
  });
  // The front is gone: nobody is left to serve.
  process.on("disconnect", () => void shutdown(0));
  // A front that died before the handler above was in place is already gone.
  if (!process.connected) void shutdown(0);

  // Off unless the OTEL_* environment (inherited from the front) asks for it.
  tracing = await startTracing("engine", undefined);
  if (tracing.enabled) spans = new RequestSpans(tracing.tracer);
  const emit = spans ? tracedSender(send, spans) : send;

  let lastReported = -1;
  loaded = await loadModel({
    modelPath: opts.modelPath,
    threads: opts.threads,
    gpu: opts.gpu,
    onProgress: (fraction) => {
      const pct = Math.floor(fraction * 10);
      if (pct === lastReported) return;
      lastReported = pct;
      send({ t: "loading", fraction });
    },
  });
  const { model } = loaded;
  context = await model.createContext({
    sequences: opts.slots,
    contextSize: opts.contextPerSlot,
    batchSize: Math.max(opts.stepTokens, opts.slots),
    threads: { ideal: opts.threads, min: opts.threads },
    // One pass over the weights per step (batchOrder.ts); the engine tags every evaluation.
    batching: ENGINE_BATCHING,
  });
  const template = ChatTemplate.select(model, opts.chatTemplateFile);
  // llama.cpp rounds the context up (to a multiple of 256); the limit clients
  // get is the one configured, so behaviour does not depend on that padding.
  const contextPerSlot = Math.min(opts.contextPerSlot, context.contextSize);
  if (opts.kvCacheDir && (opts.kvCacheMaxBytes ?? 0) > 0) {
    const release = loaded.llama.llamaCppRelease;
    kv = await KvStateStore.open(opts.kvCacheDir, modelIdentity(opts.modelPath, `${release.repo}@${release.release}`), opts.kvCacheMaxBytes!);
  }
  engine = new Engine(
    model,
    context,
    template,
    {
      slots: opts.slots,
      contextPerSlot,
      stepTokens: opts.stepTokens,
      coalesceMs: opts.coalesceMs,
      followUpMs: opts.followUpMs ?? DEFAULT_FOLLOW_UP_MS,
      ...(opts.maxBatchSlots !== undefined ? { maxBatchSlots: opts.maxBatchSlots } : {}),
      costs: {
        inputCost: opts.inputCost ?? DEFAULT_FAIRNESS_COSTS.inputCost,
        outputCost: opts.outputCost ?? DEFAULT_FAIRNESS_COSTS.outputCost,
      },
    },
    emit,
    kv && spans ? new TracedStates(kv, spans, tracing.tracer) : kv,
  );
  // Inputs as long as a slot's context: the limit clients already know from /v1/models.
  const generation = engine;
  embedder = new Embedder(
    model,
    { maxInputTokens: contextPerSlot, threads: opts.threads, batchTokens: opts.stepTokens, turn: () => generation.nextTurn() },
    send,
  );

  const meta = model.fileInfo.metadata as unknown as Record<string, unknown>;
  send({
    t: "ready",
    v: PROTOCOL_VERSION,
    model: {
      id: opts.modelId,
      path: opts.modelPath,
      bytes: fs.statSync(opts.modelPath).size,
      contextPerSlot,
      slots: opts.slots,
      trainedContext: model.trainContextSize,
      vocabSize: model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0,
      maxTokenBytes: engine.maxTokenBytes,
      embeddingSize: model.embeddingVectorSize,
      inputSpecials: {
        bos: model.tokens.shouldPrependBosToken ? (model.tokens.bos ?? null) : null,
        eos: model.tokens.shouldAppendEosToken ? (model.tokens.eos ?? null) : null,
      },
      chatTemplate: template.name,
      gpu: loaded.gpu,
      threads: opts.threads,
      synthetic: (meta.llamux as Record<string, unknown> | undefined)?.synthetic === true,
    },
  });
}

main().catch((err: unknown) => {
  send({ t: "fatal", message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
