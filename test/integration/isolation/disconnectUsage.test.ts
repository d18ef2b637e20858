// Issue 19, item 12: a client that disconnects mid-stream was charged its
// whole reservation (2,000 tokens for a dozen generated). It is now charged
// what the engine reports the request used until the cancel took effect: its
// prompt and the tokens it generated.
// One llama.cpp thread: on a machine whose cores are busy, two threads wait on
// each other's time slices (hundreds of ms a token), which these tests need not measure.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";

const KEYS = {
  limited: "lmx-leaverLeaverLeaverLeaverLeaverLeav2001",
  unlimited: "lmx-freeFreeFreeFreeFreeFreeFreeFreeFre2002",
};
const BOS = 1;
const PROMPT = [BOS, ...Array.from({ length: 9 }, (_, i) => 100 + i)]; // 10 tokens, counted exactly by any tokenizer

let dir: string;
let t: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-disconnect-usage-test-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: limited
    limits: { lifetimeTokens: 100000 }
    keys: ["${hashApiKey(KEYS.limited)}"]
  - id: unlimited
    keys: ["${hashApiKey(KEYS.unlimited)}"]
`,
  );
  t = await startTestServer([
    "--model",
    MODELS.stories260K,
    "--threads",
    "1",
    "--slots",
    "1",
    "--ctx-per-slot",
    "2048",
    "--tenants",
    tenantsFile,
    "--data-dir",
    path.join(dir, "data"),
  ]);
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Tokens stored for the tenant (what its daily and lifetime budgets count). */
function storedUsage(tenant: string): number {
  return (t.srv.store!.db.prepare("SELECT COALESCE(SUM(tokens), 0) FROM usage WHERE tenant_id = ?").pluck().get(tenant) as number) ?? 0;
}

/** Streams 2,000 tokens and hangs up after `chunks` SSE frames. */
async function streamAndLeave(key: string, chunks: number): Promise<void> {
  const ac = new AbortController();
  const res = await fetch(`${t.url}/v1/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: t.modelId, prompt: PROMPT, max_tokens: 2000, ignore_eos: true, stream: true }),
    signal: ac.signal,
  });
  assert.equal(res.status, 200);
  let frames = 0;
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body!) {
      frames += decoder.decode(chunk, { stream: true }).split("data: ").length - 1;
      if (frames >= chunks) break;
    }
  } finally {
    ac.abort();
  }
}

describe("a client that disconnects mid-stream", () => {
  for (const tenant of ["limited", "unlimited"] as const) {
    test(`is charged the prompt and the tokens generated until the cancel (${tenant})`, async () => {
      const before = storedUsage(tenant);
      const decodedBefore = (await t.srv.engine.stats())!.decodedTokens;
      await streamAndLeave(KEYS[tenant], 12);
      await waitFor(async () => (await t.srv.engine.stats())!.running === 0, 10_000, "the cancel to take effect");
      const generated = (await t.srv.engine.stats())!.decodedTokens - decodedBefore;
      await waitFor(() => storedUsage(tenant) > before, 10_000, "the usage to be stored");
      const charged = storedUsage(tenant) - before;
      assert.ok(generated >= 12 && generated < 2000, `generated ${generated}`);
      assert.ok(Math.abs(charged - (PROMPT.length + generated)) <= 1, `charged ${charged}, the engine computed ${PROMPT.length} + ${generated}`);
    });
  }
});
