// Starts the real llamux server (engine worker + HTTP) on 127.0.0.1:0 for a test
// file, with the official openai client pointed at it.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { createParser } from "eventsource-parser";
import { parseServeConfig, readServeSecrets } from "../../../src/config.js";
import { createLogger, type Logger } from "../../../src/logger.js";
import { startServer, type RunningServer } from "../../../src/server.js";

export const REPO_ROOT = path.resolve(fileURLToPath(new URL("../../../../", import.meta.url)));
const SHARED_MODELS = path.resolve(REPO_ROOT, "../shared/models");
export const MODELS = {
  stories260K: path.join(SHARED_MODELS, "stories260K.gguf"),
  tinyRandom: path.join(SHARED_MODELS, "llama-2-tiny-random.gguf"),
  tinyStories656K: path.join(SHARED_MODELS, "TinyStories-656K-Q8_0.gguf"),
};

export interface TestServer {
  srv: RunningServer;
  url: string;
  client: OpenAI;
  modelId: string;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Environment as parseServeConfig and readServeSecrets see it (e.g. LLAMUX_ADMIN_KEY); process.env is never read. */
  env?: Record<string, string>;
  /** The key `client` sends (default "test-key"). */
  apiKey?: string;
  /** The server's logger (default: silent). */
  log?: Logger;
}

/**
 * Without a --data-dir in `args`, the server gets a fresh temporary one,
 * removed by close(); a test that restarts on the same data passes its own.
 */
export async function startTestServer(args: string[], options: TestServerOptions = {}): Promise<TestServer> {
  const env = options.env ?? {};
  const ownDataDir = args.some((a) => a === "--data-dir" || a.startsWith("--data-dir=")) ? null : fs.mkdtempSync(path.join(os.tmpdir(), "llamux-test-data-"));
  const removeDataDir = () => {
    if (ownDataDir) fs.rmSync(ownDataDir, { recursive: true, force: true });
  };
  let srv: RunningServer;
  try {
    const config = parseServeConfig(["--host", "127.0.0.1", "--port", "0", "--threads", "2", ...(ownDataDir ? ["--data-dir", ownDataDir] : []), ...args], env);
    if (!config) throw new Error("unexpected --help");
    srv = await startServer(config, options.log ?? createLogger("silent"), readServeSecrets(env));
  } catch (err) {
    removeDataDir();
    throw err;
  }
  const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: options.apiKey ?? "test-key", maxRetries: 0, timeout: 60_000 });
  return {
    srv,
    url: srv.url,
    client,
    modelId: srv.model.id,
    close: async () => {
      try {
        await srv.close();
      } finally {
        removeDataDir();
      }
    },
  };
}

export interface SseResult {
  status: number;
  headers: Headers;
  /** The data field of every event, in order ([DONE] included). */
  frames: string[];
  /** Raw bytes of each network chunk, to check UTF-8 validity. */
  rawChunks: Uint8Array[];
}

/** POSTs a streaming request and collects the SSE frames exactly as sent. */
export async function postSse(url: string, body: unknown): Promise<SseResult> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const frames: string[] = [];
  const rawChunks: Uint8Array[] = [];
  const parser = createParser({ onEvent: (e) => frames.push(e.data) });
  const decoder = new TextDecoder();
  if (res.body) {
    for await (const chunk of res.body) {
      rawChunks.push(chunk);
      parser.feed(decoder.decode(chunk, { stream: true }));
    }
  }
  return { status: res.status, headers: res.headers, frames, rawChunks };
}

export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
