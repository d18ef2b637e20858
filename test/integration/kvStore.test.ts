// engine/kvStore.ts on a real model, one level below the server: what a
// sequence holds after a restore that fails at the last moment, and the order
// in which concurrent saves and restores take effect. Both were found by a
// 16-stream bench, where a save evicted the very file another slot was
// restoring and the next decode failed for every request in its batch.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { KvStateStore } from "../../engine/kvStore.js";
import { loadModel, type LoadedModel } from "../../models/load.js";
import { MODELS } from "./helpers/server.js";

const A = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her friends and her dog Max.";
const B = "Tom had a big red ball. He liked to kick it high in the sky, and every day he ran to the park to play with it.";
const C = "The cat sat on the mat and looked at the bird in the tree. The bird sang a song, and the cat fell asleep in the warm sun.";

describe("KvStateStore with a real model", () => {
  let loaded: LoadedModel;
  let model: LlamaModel;
  let context: LlamaContext;
  let seqs: LlamaContextSequence[];
  const dirs: string[] = [];

  before(async () => {
    loaded = await loadModel({ modelPath: MODELS.stories260K, threads: 1, gpu: "off" });
    model = loaded.model;
    context = await model.createContext({ sequences: 3, contextSize: 256, threads: { ideal: 1, min: 1 } });
    seqs = [0, 1, 2].map(() => context.getSequence());
  });
  after(async () => {
    await context.dispose();
    await model.dispose();
    await loaded.llama.dispose();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const tokens = (text: string): Token[] => [model.tokens.bos!, ...model.tokenize(text)];

  async function fill(seq: LlamaContextSequence, text: string): Promise<Token[]> {
    await seq.clearHistory();
    const t = tokens(text);
    await seq.evaluateWithoutGeneratingNewTokens(t);
    assert.equal(seq.nextTokenIndex, t.length);
    return t;
  }

  async function openStore(maxBytes: number): Promise<KvStateStore> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-kvstore-test-"));
    dirs.push(dir);
    return KvStateStore.open(dir, "model-identity", maxBytes);
  }

  /** The saved state for `prompt`, found the way the engine finds it. */
  function savedFor(store: KvStateStore, prompt: Token[]): string {
    const choice = store.find("t", prompt, 0);
    assert.ok(choice, "a saved state serves the prompt");
    return choice.id;
  }

  test("a restore whose load fails leaves the sequence empty and usable, not holding its old cells", async () => {
    const store = await openStore(64 * 1024 * 1024);
    const a = await fill(seqs[0]!, A);
    await store.save(seqs[0]!, "t", a.length);
    const id = savedFor(store, a);

    const target = seqs[1]!;
    await fill(target, B); // the cells the slot held before the restore
    // The file vanishes between the store's checks and llama.cpp's load.
    const load = target.loadStateFromFile.bind(target);
    target.loadStateFromFile = async (file, opts) => {
      fs.rmSync(file);
      return load(file, opts);
    };
    try {
      assert.equal(await store.restore(target, id, "t"), false);
    } finally {
      delete (target as { loadStateFromFile?: unknown }).loadStateFromFile;
    }
    assert.equal(target.nextTokenIndex, 0);
    assert.equal(store.stats().discarded, 1);
    // Before the fix llama.cpp still held B's cells at positions 0..n, and
    // this decode failed ("Eval has failed": inconsistent sequence positions).
    const c = tokens(C);
    await target.evaluateWithoutGeneratingNewTokens(c);
    assert.deepEqual(target.contextTokens, c);
  });

  test("a save returns once the slot may be reused and finishes later; a restore or flush() finishes it first", async () => {
    const store = await openStore(64 * 1024 * 1024);
    const modelDir = path.join(dirs.at(-1)!, fs.readdirSync(dirs.at(-1)!)[0]!);
    const a = await fill(seqs[0]!, A);
    await store.save(seqs[0]!, "t", a.length);
    // Only llama.cpp's file so far: no manifest, nothing a restart would keep.
    assert.deepEqual(
      fs.readdirSync(modelDir).map((f) => path.extname(f)),
      [".tmp"],
    );
    assert.equal(store.stats().states, 1, "indexed at once");
    assert.equal(store.stats().saved, 0, "counted when finished");
    // The slot is reused straight away; the restore finishes the save first.
    await fill(seqs[0]!, B);
    assert.equal(await store.restore(seqs[1]!, savedFor(store, a), "t"), true);
    assert.deepEqual(seqs[1]!.contextTokens, a);
    assert.deepEqual(
      fs
        .readdirSync(modelDir)
        .map((f) => path.extname(f))
        .sort(),
      [".json", ".kv"],
    );

    const c = await fill(seqs[2]!, C);
    await store.save(seqs[2]!, "t", c.length);
    store.flush();
    assert.equal(store.stats().saved, 2);
    const reopened = await KvStateStore.open(dirs.at(-1)!, "model-identity", 64 * 1024 * 1024);
    assert.equal(reopened.stats().states, 2, "both survive a restart");
    assert.equal(await reopened.restore(seqs[1]!, savedFor(reopened, c), "t"), true);
    assert.deepEqual(seqs[1]!.contextTokens, c);
  });

  test("retain() deletes every state of a tenant not listed, finished or not, and saves none for it afterwards (issue 19 item 5)", async () => {
    const store = await openStore(64 * 1024 * 1024);
    const modelDir = path.join(dirs.at(-1)!, fs.readdirSync(dirs.at(-1)!)[0]!);
    const a = await fill(seqs[0]!, A);
    await store.save(seqs[0]!, "gone~1", a.length);
    store.flush();
    const b = await fill(seqs[1]!, B);
    await store.save(seqs[1]!, "kept~1", b.length); // left unfinished
    const c = await fill(seqs[2]!, C);
    await store.save(seqs[2]!, "gone~1", c.length); // unfinished too
    store.retain(new Set(["kept~1"]));
    assert.equal(store.find("gone~1", a, 0), null);
    assert.equal(store.find("gone~1", c, 0), null);
    assert.ok(store.find("kept~1", b, 0));
    store.flush();
    const manifests = fs.readdirSync(modelDir).filter((f) => f.endsWith(".json"));
    assert.deepEqual(
      manifests.map((f) => JSON.parse(fs.readFileSync(path.join(modelDir, f), "utf8")).tenant),
      ["kept~1"],
    );
    assert.equal(fs.readdirSync(modelDir).length, 2, "one state file and its manifest, no leftovers");
    await store.save(seqs[0]!, "gone~1", a.length);
    assert.equal(store.stats().states, 1, "a deleted tenant's slot is never saved again");
  });

  test("a save left to its timer finishes on its own", async () => {
    const store = await openStore(64 * 1024 * 1024);
    const a = await fill(seqs[0]!, A);
    await store.save(seqs[0]!, "t", a.length);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(store.stats().saved, 1);
    const reopened = await KvStateStore.open(dirs.at(-1)!, "model-identity", 64 * 1024 * 1024);
    assert.equal(reopened.stats().states, 1);
  });

  test("states are owner-only (directory 0700, files 0600), and a link planted in the directory is removed at open, its target untouched (issue 19 items 13, 16)", async () => {
    const store = await openStore(64 * 1024 * 1024);
    const root = dirs.at(-1)!;
    const dir = path.join(root, "model-identity".slice(0, 16));
    const a = await fill(seqs[0]!, A);
    await store.save(seqs[0]!, "t", a.length);
    await store.flush();
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    const files = fs.readdirSync(dir);
    assert.ok(files.some((f) => f.endsWith(".kv")) && files.some((f) => f.endsWith(".json")), files.join(", "));
    for (const f of files) assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
    // A link named like a state, and one like its manifest, pointing outside.
    const target = path.join(root, "outside.txt");
    fs.writeFileSync(target, "not llamux's");
    fs.symlinkSync(target, path.join(dir, "planted.kv"));
    fs.symlinkSync(target, path.join(dir, "planted.json"));
    const reopened = await KvStateStore.open(root, "model-identity", 64 * 1024 * 1024);
    assert.equal(reopened.stats().states, 1, "the real state is kept");
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.startsWith("planted")),
      [],
      "the links are gone",
    );
    assert.equal(fs.readFileSync(target, "utf8"), "not llamux's");
  });

  test("saves and restores take effect in the order called: a save that evicts a state waits for its restore", async () => {
    const a = await fill(seqs[0]!, A);
    // Room for one state of about A's size (C's is similar): a second save evicts the first.
    const probe = await openStore(64 * 1024 * 1024);
    await probe.save(seqs[0]!, "t", a.length);
    const store = await openStore(Math.floor(probe.stats().bytes * 1.5));
    await store.save(seqs[0]!, "t", a.length);
    const id = savedFor(store, a);

    await fill(seqs[1]!, B);
    await fill(seqs[2]!, C);
    // As the engine admits two requests at once: one slot restores A while
    // another slot's eviction saves C, which must make room by deleting A.
    const [restored] = await Promise.all([store.restore(seqs[1]!, id, "t"), store.save(seqs[2]!, "t", seqs[2]!.nextTokenIndex)]);
    assert.equal(restored, true);
    assert.deepEqual(seqs[1]!.contextTokens, a);
    assert.equal(store.stats().states, 1, "then C's save evicted A");
    assert.equal(store.find("t", a, 0), null);
    assert.ok(store.find("t", tokens(C), 0));
  });
});
