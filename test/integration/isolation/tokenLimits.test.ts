// Issue 19, item 7: token limits must hold. Admission used to reserve a
// cl100k estimate, which the served model's tokenizer beats: digit strings on
// the Llama-2 vocabulary cost one token per digit (cl100k: one per three), so
// a burst used 2.5× its tokens-per-minute limit and daily and lifetime budgets
// stayed exceeded for good. Now each reservation is resized to the engine's
// own count of the prompt plus max_tokens before anything runs; what does not
// fit is refused. These tests add up what the server says every request used.
// One llama.cpp thread: on a machine whose cores are busy, two threads wait on
// each other's time slices (hundreds of ms a token), which these tests need not measure.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const KEYS = {
  tpm: "lmx-tpmTpmTpmTpmTpmTpmTpmTpmTpmTpmTpmTpm1001",
  daily: "lmx-dailyDailyDailyDailyDailyDailyDaily1002",
  lifetime: "lmx-lifeLifeLifeLifeLifeLifeLifeLifeLif1003",
  seq: "lmx-seqSeqSeqSeqSeqSeqSeqSeqSeqSeqSeqSeq1004",
};
const LIMITS = { tpm: 2000, daily: 300, lifetime: 300, seq: 300 };

let dir: string;
let t: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-token-limits-test-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: tpm
    limits: { tokensPerMinute: ${LIMITS.tpm} }
    keys: ["${hashApiKey(KEYS.tpm)}"]
  - id: daily
    limits: { tokensPerDay: ${LIMITS.daily} }
    keys: ["${hashApiKey(KEYS.daily)}"]
  - id: lifetime
    limits: { lifetimeTokens: ${LIMITS.lifetime} }
    keys: ["${hashApiKey(KEYS.lifetime)}"]
  - id: seq
    limits: { tokensPerDay: ${LIMITS.seq} }
    keys: ["${hashApiKey(KEYS.seq)}"]
`,
  );
  t = await startTestServer([
    "--model",
    MODELS.tinyRandom,
    "--threads",
    "1",
    "--slots",
    "4",
    "--ctx-per-slot",
    "512",
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

/** A digit string: one Llama-2 token per digit, about a third of that by cl100k. */
function digits(n: number, seed: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += String((i * 7 + seed * 13) % 10);
  return s;
}

interface Outcome {
  status: number;
  /** total_tokens of a 200; 0 otherwise. */
  used: number;
}

async function complete(key: string, prompt: string, maxTokens: number): Promise<Outcome> {
  const res = await fetch(`${t.url}/v1/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: t.modelId, prompt, max_tokens: maxTokens, ignore_eos: true, temperature: 1 }),
  });
  const body = (await res.json()) as { usage?: { total_tokens: number } };
  if (res.status !== 200 && res.status !== 429) assert.fail(`unexpected ${res.status}: ${JSON.stringify(body)}`);
  return { status: res.status, used: res.status === 200 ? body.usage!.total_tokens : 0 };
}

async function burst(key: string, n: number, promptDigits: number, maxTokens: number): Promise<Outcome[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => complete(key, digits(promptDigits, i), maxTokens)));
}

const total = (outcomes: Outcome[]) => outcomes.reduce((sum, o) => sum + o.used, 0);

describe("token limits under bursts of digit strings (llama-2 vocabulary)", () => {
  test("tokens per minute: a burst uses at most the limit plus what the bucket refilled meanwhile", async () => {
    const startedMs = Date.now();
    // 16 × (≈ 301 prompt + 40) ≈ 5,500 tokens asked for; cl100k counts each prompt as ≈ 100.
    const outcomes = await burst(KEYS.tpm, 16, 300, 40);
    const elapsedMs = Date.now() - startedMs;
    const used = total(outcomes);
    const bound = LIMITS.tpm + Math.ceil((LIMITS.tpm * elapsedMs) / 60_000);
    assert.ok(outcomes.some((o) => o.status === 200) && outcomes.some((o) => o.status === 429), `some served, some refused: ${outcomes.map((o) => o.status)}`);
    assert.ok(used <= bound, `used ${used} tokens against ${LIMITS.tpm}/min (bound ${bound} after ${elapsedMs} ms)`);
  });

  for (const which of ["daily", "lifetime"] as const) {
    test(`${which} budget: a burst never takes it past the limit, and it stays within it afterwards`, async () => {
      const outcomes = await burst(KEYS[which], 8, 60, 20);
      const used = total(outcomes);
      assert.ok(used > 0, "something was served");
      assert.ok(used <= LIMITS[which], `used ${used} against ${LIMITS[which]}`);
      // Whatever is left, a request that would need more is refused: the total never passes the limit.
      const more = await burst(KEYS[which], 8, 60, 20);
      assert.ok(used + total(more) <= LIMITS[which], `then ${used + total(more)} against ${LIMITS[which]}`);
    });
  }

  test("sequential requests near the budget: the total stops at or below it", async () => {
    let used = 0;
    let refused = 0;
    for (let i = 0; i < 20 && refused < 3; i++) {
      const o = await complete(KEYS.seq, digits(50, i), 15);
      used += o.used;
      if (o.status === 429) refused++;
    }
    assert.ok(refused > 0, "the budget ran out");
    assert.ok(used <= LIMITS.seq, `used ${used} against ${LIMITS.seq}`);
    assert.ok(used > LIMITS.seq - 70, `and most of it was usable (used ${used})`);
  });
});
