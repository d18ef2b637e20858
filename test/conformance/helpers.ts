// The conformance suite's server: the real llamux (engine worker + HTTP) on
// stories260K, with two tenants: `app`, unlimited, whose key every client
// uses, and `slow`, allowed 2 requests a minute, for the clients' 429 paths.
//
// The models here are not chat-tuned. What the suite asserts is what a
// client needs from the protocol: a tool loop is a call forced by the grammar
// (tool_choice required or named) whose result the client then sends back;
// structured output is grammar-forced JSON that the client's own parser
// accepts. Every schema bounds its strings so each value ends well before the
// token limit.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { hashApiKey } from "../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../integration/helpers/server.js";

export const KEYS = {
  app: "lmx-appAppAppAppAppAppAppAppAppAppAppAppA0001",
  slow: "lmx-slowSlowSlowSlowSlowSlowSlowSlowSlowS0002",
};
/** requestsPerMinute of the `slow` tenant. */
export const SLOW_RPM = 2;

export interface ConformanceServer {
  t: TestServer;
  /** http://127.0.0.1:port/v1 */
  baseURL: string;
  modelId: string;
  close(): Promise<void>;
}

export async function startConformanceServer(): Promise<ConformanceServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-conformance-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: app
    keys: ["${hashApiKey(KEYS.app)}"]
  - id: slow
    limits: { requestsPerMinute: ${SLOW_RPM} }
    keys: ["${hashApiKey(KEYS.slow)}"]
`,
  );
  let t: TestServer;
  try {
    t = await startTestServer(
      ["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "2048", "--tenants", tenantsFile, "--data-dir", path.join(dir, "data")],
      {
        apiKey: KEYS.app,
      },
    );
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    t,
    baseURL: `${t.url}/v1`,
    modelId: t.modelId,
    close: async () => {
      try {
        await t.close();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
