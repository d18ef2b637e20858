// A running llamux server: engine worker + HTTP listener, started in order and
// stopped in reverse. Used by `llamux serve` and by the integration tests.
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { EngineClient, type ModelInfo } from "../engine/index.js";
import { resolveModel } from "../models/resolve.js";
import { createApp } from "./app.js";
import type { ServeConfig } from "./config.js";
import type { Logger } from "./logger.js";
import { createMetrics } from "./metrics.js";

const pkg = createRequire(import.meta.url)("../../package.json") as { version: string };
export const VERSION = pkg.version;

export interface RunningServer {
  url: string;
  engine: EngineClient;
  model: ModelInfo;
  /** Stops accepting, ends the listener and open connections, then stops the worker. */
  close(): Promise<void>;
}

export async function startServer(config: ServeConfig, log: Logger): Promise<RunningServer> {
  const resolved = await resolveModel(config.model, { modelsDir: config.modelsDir, cacheDir: config.cacheDir });
  if (resolved.generated) {
    log.warn(
      { model: resolved.path },
      "NO MODEL GIVEN: serving a generated synthetic model with RANDOM WEIGHTS. Its output is gibberish; it exists for smoke tests. Pass --model to serve a real GGUF.",
    );
  }
  const engine = new EngineClient({
    worker: {
      modelPath: resolved.path,
      modelId: resolved.id,
      slots: config.slots,
      contextPerSlot: config.ctxPerSlot,
      threads: config.threads,
      gpu: config.gpu,
      chatTemplateFile: config.chatTemplate,
      stepTokens: config.stepTokens,
      coalesceMs: config.coalesceMs,
    },
    log: (msg, fields) => log.info(fields ?? {}, msg),
  });
  let accepting = true;
  const metrics = createMetrics();
  const app = createApp({
    engine,
    metrics,
    log,
    alias: config.alias,
    maxBodyBytes: config.maxBodyBytes,
    version: VERSION,
    accepting: () => accepting,
  });

  // Listen first so /health answers (and /ready says 503) while the model loads.
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once("error", reject);
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // streams may legitimately run for minutes
  server.keepAliveTimeout = 5_000;
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;

  const closeHttp = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });

  let model: ModelInfo;
  try {
    log.info({ model: resolved.path, slots: config.slots, ctxPerSlot: config.ctxPerSlot, threads: config.threads, gpu: config.gpu }, "loading model");
    model = await engine.start();
  } catch (err) {
    await closeHttp();
    await engine.stop();
    throw err;
  }
  engine.on("restart", (n: number) => log.error({ restarts: n }, "engine worker restarted"));
  log.info({ url, model: model.id, gpu: model.gpu, chatTemplate: model.chatTemplate, contextPerSlot: model.contextPerSlot }, "llamux ready");

  return {
    url,
    engine,
    model,
    close: async () => {
      accepting = false;
      await closeHttp();
      await engine.stop();
    },
  };
}
