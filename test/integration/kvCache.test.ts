// Saved KV states: a conversation evicted from its slot is written to
// --kv-cache-dir and restored, not recomputed, when it continues. A restored
// continuation must give exactly the greedy tokens a recomputed one gives; a
// damaged or foreign state file must be deleted and never loaded.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { MODELS, startTestServer, type TestServer } from "./helpers/server.js";

const A = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her friends and her dog Max.";
const B = "Tom had a big red ball. He liked to kick it high in the sky, and every day he ran to the park to play with it.";
const SLOT_ARGS = ["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "256"];

interface Outcome {
  text: string;
  cached: number;
  prompt: number;
}

async function greedy(t: TestServer, prompt: string): Promise<Outcome> {
  const r = await t.client.completions.create({ model: t.modelId, prompt, max_tokens: 24, temperature: 0 });
  return { text: r.choices[0]!.text, cached: r.usage!.prompt_tokens_details!.cached_tokens!, prompt: r.usage!.prompt_tokens };
}

async function kvStats(t: TestServer) {
  const s = (await t.srv.engine.stats())!;
  assert.ok(s.kv, "saving is on");
  return s.kv;
}

/** The state files under a data dir's kv-cache, by model subdirectory. */
function stateFiles(dataDir: string): string[] {
  const root = path.join(dataDir, "kv-cache");
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).flatMap((d) =>
    fs
      .readdirSync(path.join(root, d))
      .filter((f) => f.endsWith(".kv"))
      .map((f) => path.join(root, d, f)),
  );
}

describe("saved KV states", () => {
  // What a recomputation gives: with saving off and one slot, B evicts A for good.
  let first: Outcome;
  let continuation: string;
  let recomputed: Outcome;
  const dirs: string[] = [];
  const dataDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-kv-test-"));
    dirs.push(d);
    return d;
  };

  before(async () => {
    const ref = await startTestServer([...SLOT_ARGS, "--kv-cache-max-bytes", "0"]);
    try {
      first = await greedy(ref, A);
      continuation = `${A}${first.text} Then`;
      await greedy(ref, B);
      recomputed = await greedy(ref, continuation);
      assert.ok(recomputed.cached <= 1, "nothing of A but its BOS token survives B without saved states");
      assert.equal((await ref.srv.engine.stats())!.kv, null);
    } finally {
      await ref.close();
    }
  });

  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  test("an evicted conversation is restored, and continues with the tokens a recomputation gives", async () => {
    const t = await startTestServer(SLOT_ARGS);
    try {
      assert.deepEqual(await greedy(t, A), first);
      await greedy(t, B); // takes A's only slot: A is saved first
      const saved = await kvStats(t);
      assert.deepEqual([saved.saved, saved.restored, saved.states], [1, 0, 1]);
      assert.ok(saved.bytes > 0);
      const restored = await greedy(t, continuation);
      assert.equal(restored.text, recomputed.text);
      // All of A's prompt and completion came back from disk (the last one or
      // two tokens may tokenize differently once " Then" follows them).
      assert.ok(restored.cached >= first.prompt + 24 - 2, `cached ${restored.cached} of ${restored.prompt}`);
      const s = await kvStats(t);
      assert.equal(s.restored, 1);
      assert.equal(s.saved, 2, "B was saved in turn when A came back");
      assert.equal(s.discarded, 0);
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      assert.match(metrics, /^llamux_kv_states_restored_total\{model="[^"]+"\} 1$/m);
      assert.match(metrics, /^llamux_kv_saved_states\{model="[^"]+"\} 2$/m);
    } finally {
      await t.close();
    }
  });

  test("saved states survive a restart on the same data dir, and a clean shutdown saves the warm slots", async () => {
    const dir = dataDir();
    const before = await startTestServer([...SLOT_ARGS, "--data-dir", dir]);
    try {
      await greedy(before, A);
      await greedy(before, B);
    } finally {
      await before.close();
    }
    const t = await startTestServer([...SLOT_ARGS, "--data-dir", dir]);
    try {
      // A was saved when B took its slot; B, still warm, when the server stopped.
      assert.equal((await kvStats(t)).states, 2);
      const restored = await greedy(t, continuation);
      assert.equal(restored.text, recomputed.text);
      assert.ok(restored.cached > first.prompt, `cached ${restored.cached}`);
      assert.equal((await kvStats(t)).restored, 1);
    } finally {
      await t.close();
    }
  });

  test("a damaged state file is deleted and the prefix recomputed", async () => {
    const dir = dataDir();
    const t = await startTestServer([...SLOT_ARGS, "--data-dir", dir]);
    try {
      await greedy(t, A);
      await greedy(t, B);
      const [file] = stateFiles(dir);
      assert.ok(file, "A's state was written");
      const bytes = fs.readFileSync(file);
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      fs.writeFileSync(file, bytes);
      const after = await greedy(t, continuation);
      assert.equal(after.text, recomputed.text);
      assert.ok(after.cached <= 1, `cached ${after.cached}`);
      const s = await kvStats(t);
      assert.equal(s.discarded, 1);
      assert.equal(s.restored, 0);
      assert.ok(!fs.existsSync(file), "the damaged file is gone");
    } finally {
      await t.close();
    }
  });

  test("a state file of another model is never loaded", async () => {
    const dir = dataDir();
    const stories = await startTestServer([...SLOT_ARGS, "--data-dir", dir]);
    try {
      await greedy(stories, A);
      await greedy(stories, B);
    } finally {
      await stories.close();
    }
    const [file] = stateFiles(dir);
    assert.ok(file);
    const other = ["--model", MODELS.tinyRandom, "--slots", "1", "--ctx-per-slot", "256", "--data-dir", dir];
    const first = await startTestServer(other);
    await first.close();
    // Plant the stories260K state, manifest and all, in the other model's directory.
    const otherDir = fs
      .readdirSync(path.join(dir, "kv-cache"))
      .map((d) => path.join(dir, "kv-cache", d))
      .find((d) => d !== path.dirname(file));
    assert.ok(otherDir, "the other model keys its own directory");
    const planted = path.join(otherDir, path.basename(file));
    fs.copyFileSync(file, planted);
    fs.copyFileSync(file.replace(/\.kv$/, ".json"), planted.replace(/\.kv$/, ".json"));
    const t = await startTestServer(other);
    try {
      const s = await kvStats(t);
      assert.equal(s.states, 0);
      assert.equal(s.discarded, 1);
      assert.ok(!fs.existsSync(planted));
      const r = await t.client.completions.create({ model: t.modelId, prompt: continuation, max_tokens: 4, temperature: 0 });
      assert.equal(r.usage!.prompt_tokens_details!.cached_tokens, 0);
    } finally {
      await t.close();
    }
    assert.ok(fs.existsSync(file), "stories260K's own state is untouched");
  });
});
