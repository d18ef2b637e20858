// Issue 19, item 5: a tenant deleted and created again under the same id must
// not inherit anything the old one cached. Its KV cache was keyed by the id,
// so the new `acme` was served the old one's prefixes (from its slot and from
// saved state files), and cached_tokens told it, token by token, how much of
// a guess matched what the old tenant had sent. Deleting a tenant now drops
// what it cached, in slots and on disk, and the engine keys the cache by the
// tenant's incarnation.
// One llama.cpp thread: on a machine whose cores are busy, two threads wait on
// each other's time slices (hundreds of ms a token), which these tests need not measure.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-tests-0123456789";
// Two secrets the old acme sent: one left in its slot, one saved to disk when another tenant took the slot.
const ON_DISK = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her friends and her dog Max.";
const IN_SLOT = "Tom had a big red ball. He liked to kick it high in the sky, and every day he ran to the park to play with it.";
const OTHER = "The cat sat on the mat and looked at the bird in the tree. The bird sang a song, and the cat fell asleep in the warm sun.";

let dataDir: string;
let t: TestServer;

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-recreated-test-"));
  // One slot: every other tenant's request evicts acme's cache, saving it to disk.
  t = await startTestServer(["--model", MODELS.stories260K, "--threads", "1", "--slots", "1", "--ctx-per-slot", "256", "--data-dir", dataDir], {
    env: { LLAMUX_ADMIN_KEY: ADMIN_KEY },
  });
});
after(async () => {
  await t?.close();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

async function admin(method: string, url: string, body?: unknown): Promise<any> {
  const res = await fetch(`${t.url}/admin${url}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(res.ok, `${method} ${url}: ${res.status}`);
  return res.status === 204 ? null : res.json();
}

async function tenantWithKey(id: string): Promise<string> {
  await admin("POST", "/tenants", { id });
  return (await admin("POST", `/tenants/${id}/keys`)).key;
}

async function cachedTokens(key: string, prompt: string): Promise<number> {
  const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
  const r = await client.completions.create({ model: t.modelId, prompt, max_tokens: 4, temperature: 0 });
  return r.usage!.prompt_tokens_details!.cached_tokens!;
}

/** The tenant (engine name) of every saved KV state under the data dir. */
function savedStateTenants(): string[] {
  const root = path.join(dataDir, "kv-cache");
  if (!fs.existsSync(root)) return [];
  const files = fs.readdirSync(root, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".json"));
  return files.map((f) => JSON.parse(fs.readFileSync(path.join(root, f), "utf8")).tenant as string);
}

describe("a tenant re-created under a deleted tenant's id", () => {
  test("gets cached_tokens 0 on the old tenant's prompts, and the old tenant's state files are gone", async () => {
    const oldKey = await tenantWithKey("acme");
    const otherKey = await tenantWithKey("other");

    await cachedTokens(oldKey, ON_DISK);
    assert.ok((await cachedTokens(oldKey, ON_DISK)) > 10, "the cache works: the old acme's repeat is served from its slot");
    await cachedTokens(otherKey, OTHER); // takes the slot: ON_DISK is saved
    await cachedTokens(oldKey, IN_SLOT); // takes it back: OTHER is saved, IN_SLOT stays in the slot
    const acmeStates = () => savedStateTenants().filter((tenant) => tenant.startsWith("acme"));
    assert.equal(acmeStates().length, 1, "the old acme's first prompt is on disk");
    assert.ok(savedStateTenants().some((tenant) => tenant.startsWith("other")));

    await admin("DELETE", "/tenants/acme");
    await waitFor(() => acmeStates().length === 0, 10_000, "the deleted tenant's state files to be deleted");
    assert.ok(
      savedStateTenants().some((tenant) => tenant.startsWith("other")),
      "other tenants' states are kept",
    );

    const newKey = await tenantWithKey("acme");
    assert.equal(await cachedTokens(newKey, IN_SLOT), 0, "nothing from the old acme's slot");
    // Another tenant takes the slot, so the next prompt finds none of the new acme's own tokens (its BOS) either.
    await cachedTokens(otherKey, OTHER);
    assert.equal(await cachedTokens(newKey, ON_DISK), 0, "nothing from the old acme's saved state");
    // And the new acme's own cache works as any tenant's does.
    assert.ok((await cachedTokens(newKey, ON_DISK)) > 10);
  });
});
