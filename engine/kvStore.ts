// Saved KV states on disk: when the engine must evict a slot that holds a
// conversation, it writes the slot's sequence state here, and restores it into
// a free slot when the conversation continues, instead of recomputing it.
//
// Safety: llama.cpp trusts a state file completely (a file from another model
// can crash the process), so a file is loaded only when its manifest names
// this model's identity and the requesting tenant, its bytes hash to the
// sha256 recorded when it was written, and the tokens it restores are the
// ones recorded. Anything else is deleted and the prefix recomputed.
//
// Layout: <dir>/<model key>/<id>.kv (llama.cpp's file) and <id>.json (the
// manifest, written last, so a crash mid-save leaves no manifest and the
// orphan is swept at the next open). Bounded by maxBytes, least recently used
// out first. Everything here is a cache: losing it costs only recomputation.
//
// A save is in two parts. The engine waits only for the first, llama.cpp
// writing the slot's state to a temporary file, because the slot is reused
// the moment it returns. The rest (hash, rename, manifest, deleting what the
// save evicted) runs on a timer, after the step that needed the slot has
// gone to the decoder: it is synchronous, so it never interleaves with a
// restore, and a restore of a state still unfinished finishes it first.
import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Token } from "node-llama-cpp";
import type { KvCacheStats } from "./protocol.js";
import { chooseRestore, decideSave, evictionsFor, type RestoreChoice, type SavedStateView } from "./kvIndex.js";
import type { SavedSize, SavedStates, StateSequence } from "./sequence.js";

const FORMAT = 1;
/** Bytes hashed at each end of the model file for its identity. */
const IDENTITY_EDGE_BYTES = 16 * 1024 * 1024;

interface Manifest {
  format: number;
  model: string;
  tenant: string;
  tokens: number[];
  bytes: number;
  sha256: string;
}

/**
 * Identity of a model file and the runtime that reads its states: size, the
 * first and last 16 MiB (GGUF header, metadata, tensor layout, and the
 * weights at both ends) and the llama.cpp release. Hashing the whole file
 * would cost seconds per start for large models; a different model or
 * quantisation differs in these bytes.
 */
export function modelIdentity(modelPath: string, runtime: string): string {
  const hash = createHash("sha256");
  const fd = fs.openSync(modelPath, "r");
  try {
    const size = fs.fstatSync(fd).size;
    hash.update(`${FORMAT}\0${runtime}\0${size}\0`);
    const buf = Buffer.alloc(Math.min(IDENTITY_EDGE_BYTES, size));
    for (const start of new Set([0, Math.max(0, size - buf.length)])) {
      const n = fs.readSync(fd, buf, 0, buf.length, start);
      hash.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

/** sha256 of a file that must be `bytes` long (else it throws), read synchronously in pieces. */
function sha256File(file: string, bytes: number): string {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(Math.min(bytes, 4 * 1024 * 1024));
  const fd = fs.openSync(file, "r");
  try {
    let at = 0;
    for (let n: number; at < bytes && (n = fs.readSync(fd, buf, 0, Math.min(buf.length, bytes - at), at)) > 0; at += n) hash.update(buf.subarray(0, n));
    if (at !== bytes || fs.fstatSync(fd).size !== bytes) throw new Error("state file changed while it was hashed");
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

function isManifest(v: unknown): v is Manifest {
  const m = v as Manifest;
  return (
    typeof m === "object" &&
    m !== null &&
    m.format === FORMAT &&
    typeof m.model === "string" &&
    typeof m.tenant === "string" &&
    Array.isArray(m.tokens) &&
    m.tokens.every((t) => Number.isInteger(t) && t >= 0) &&
    Number.isInteger(m.bytes) &&
    typeof m.sha256 === "string"
  );
}

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

export class KvStateStore implements SavedStates {
  private readonly entries = new Map<string, SavedStateView>();
  /** Saves written but not yet finished: what they evicted, and the timer that finishes them. */
  /** The tenants whose states may be kept (retain()); null: all. */
  private retained: ReadonlySet<string> | null = null;
  private readonly unfinished = new Map<string, { doomed: string[]; timer: NodeJS.Timeout }>();
  private readonly dir: string;
  private clock = 0;
  private saved = 0;
  private restored = 0;
  private discarded = 0;
  /**
   * Saves and restores run one at a time. The engine admits several requests
   * at once, and each may save a slot's state (evicting others to stay under
   * maxBytes) or restore one; interleaved, a save could delete the very file
   * a restore was about to load.
   */
  private turn: Promise<unknown> = Promise.resolve();

  private constructor(
    root: string,
    private readonly model: string,
    private readonly maxBytes: number,
  ) {
    this.dir = path.join(root, model.slice(0, 16));
  }

  /** Opens the store, keeping the valid states of earlier runs and sweeping the rest. */
  static async open(root: string, model: string, maxBytes: number): Promise<KvStateStore> {
    const store = new KvStateStore(root, model, maxBytes);
    // Owner-only: a state file is a tenant's conversation, readable as tokens.
    await fs.promises.mkdir(store.dir, { recursive: true, mode: 0o700 });
    await store.load();
    return store;
  }

  stats(): KvCacheStats {
    let bytes = 0;
    for (const e of this.entries.values()) bytes += e.bytes;
    return { states: this.entries.size, bytes, saved: this.saved, restored: this.restored, discarded: this.discarded };
  }

  /**
   * Deletes every saved state of a tenant not in `tenants` (a deleted tenant's:
   * nothing of it may outlive it, on disk or in the index), finished or not.
   */
  retain(tenants: ReadonlySet<string>): void {
    this.retained = tenants;
    for (const e of [...this.entries.values()]) {
      if (tenants.has(e.tenant)) continue;
      const pending = this.unfinished.get(e.id);
      if (pending) {
        clearTimeout(pending.timer);
        this.unfinished.delete(e.id);
        for (const old of pending.doomed) this.unlink(old);
      }
      this.remove(e.id);
    }
  }

  /** The saved states, for planning (scheduler.ts chooses restores among them). */
  states(): Iterable<SavedStateView> {
    return this.entries.values();
  }

  /** The saved state worth restoring for this prompt, if any (see chooseRestore). */
  find(tenant: string, prompt: readonly Token[], slotReuse: number): RestoreChoice | null {
    return chooseRestore(this.entries.values(), tenant, prompt, slotReuse);
  }

  /**
   * Writes `seq`'s state out before the slot loses `lostTokens` of its cache,
   * when that is worth keeping. Resolves once `seq` may be overwritten; the
   * state is in the index from then on, and on disk under its final name
   * shortly after (finish()).
   */
  save(seq: StateSequence, tenant: string, lostTokens: number): Promise<SavedSize | null> {
    return this.exclusive(() => this.write(seq, tenant, lostTokens));
  }

  /**
   * Loads state `id` into `seq` after checking it belongs to `tenant` and is
   * intact. True when `seq` now holds exactly the saved tokens. False when the
   * state is gone (evicted since it was found) or unusable (it is deleted):
   * `seq` then holds what it held before or nothing, its token list agreeing
   * with its KV cells either way, so clearHistory() empties it.
   */
  restore(seq: StateSequence, id: string, tenant: string): Promise<boolean> {
    return this.exclusive(() => this.restoreNow(seq, id, tenant));
  }

  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.turn.then(op);
    this.turn = run.catch(() => undefined);
    return run;
  }

  private async write(seq: StateSequence, tenant: string, lostTokens: number): Promise<SavedSize | null> {
    if (this.retained && !this.retained.has(tenant)) return null;
    const tokens = seq.contextTokens;
    const decision = decideSave(this.entries.values(), tenant, tokens, lostTokens);
    if (decision.kind === "skip") return null;
    const id = randomUUID();
    const tmp = `${this.stateFile(id)}.tmp`;
    let bytes: number;
    try {
      await seq.saveStateToFile(tmp);
      // llama.cpp creates the file under the process umask: owner-only, like the database.
      fs.chmodSync(tmp, 0o600);
      bytes = fs.statSync(tmp).size;
    } catch {
      // A state that cannot be written is a cache miss later, nothing worse.
      this.unlink(id);
      return null;
    }
    // The tenant was deleted while its state was being written.
    if (bytes > this.maxBytes || (this.retained && !this.retained.has(tenant))) {
      this.unlink(id);
      return null;
    }
    // Out of the index now, so that the bound holds and nothing restores
    // them; their files go when this save finishes.
    const doomed = [...evictionsFor(this.entries.values(), this.maxBytes, bytes), ...decision.supersedes];
    for (const old of doomed) this.entries.delete(old);
    this.entries.set(id, { id, tenant, tokens: [...tokens], bytes, lastUsed: ++this.clock });
    this.unfinished.set(id, { doomed, timer: setTimeout(() => this.finish(id), 0) });
    return { bytes, tokens: tokens.length };
  }

  /** Finishes every save still pending (at shutdown, so that what was written is kept). */
  flush(): void {
    for (const id of [...this.unfinished.keys()]) this.finish(id);
  }

  /**
   * The second part of save `id`: hashes the temporary file, renames it and
   * writes its manifest, then deletes the states the save evicted or
   * superseded. Synchronous, so no restore can run in the middle of it.
   */
  private finish(id: string): void {
    const pending = this.unfinished.get(id);
    if (!pending) return;
    this.unfinished.delete(id);
    clearTimeout(pending.timer);
    for (const old of pending.doomed) this.unlink(old);
    const entry = this.entries.get(id);
    // Evicted by a later save before this one finished.
    if (!entry) {
      this.unlink(id);
      return;
    }
    const file = this.stateFile(id);
    try {
      const sha256 = sha256File(`${file}.tmp`, entry.bytes);
      fs.renameSync(`${file}.tmp`, file);
      const manifest: Manifest = { format: FORMAT, model: this.model, tenant: entry.tenant, tokens: [...entry.tokens], bytes: entry.bytes, sha256 };
      fs.writeFileSync(`${this.manifestFile(id)}.tmp`, JSON.stringify(manifest), { mode: 0o600 });
      fs.renameSync(`${this.manifestFile(id)}.tmp`, this.manifestFile(id));
      this.saved++;
    } catch {
      this.remove(id);
    }
  }

  private async restoreNow(seq: StateSequence, id: string, tenant: string): Promise<boolean> {
    this.finish(id);
    const entry = this.entries.get(id);
    if (!entry || entry.tenant !== tenant) return false;
    try {
      const manifest: unknown = JSON.parse(await fs.promises.readFile(this.manifestFile(id), "utf8"));
      if (
        !isManifest(manifest) ||
        manifest.model !== this.model ||
        manifest.tenant !== tenant ||
        !sameTokens(manifest.tokens, entry.tokens) ||
        sha256File(this.stateFile(id), manifest.bytes) !== manifest.sha256
      ) {
        throw new Error("state file does not match its manifest");
      }
      // Emptied here, not left to the load: node-llama-cpp forgets the
      // sequence's tokens before it asks llama.cpp to load, so a load that
      // fails (a file gone, a read error) would leave the old KV cells in
      // place with a sequence that believes it is empty, and clearHistory()
      // could no longer erase them: the next decode into this slot would fail
      // for every request in its batch.
      await seq.clearHistory();
      await seq.loadStateFromFile(this.stateFile(id), { acceptRisk: true });
      if (!sameTokens(seq.contextTokens, entry.tokens)) throw new Error("restored tokens differ from the saved ones");
    } catch {
      this.discarded++;
      this.remove(id);
      await seq.clearHistory().catch(() => undefined);
      return false;
    }
    entry.lastUsed = ++this.clock;
    const now = new Date();
    await fs.promises.utimes(this.manifestFile(id), now, now).catch(() => undefined);
    this.restored++;
    return true;
  }

  private stateFile(id: string): string {
    return path.join(this.dir, `${id}.kv`);
  }

  private manifestFile(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  /** Forgets state `id` and deletes its files. */
  private remove(id: string): void {
    this.entries.delete(id);
    this.unlink(id);
  }

  /** Deletes state `id`'s files, finished or not. */
  private unlink(id: string): void {
    for (const f of [this.manifestFile(id), this.stateFile(id), `${this.stateFile(id)}.tmp`]) {
      try {
        fs.rmSync(f, { force: true });
      } catch {
        // Swept at the next open.
      }
    }
  }

  /**
   * Indexes the manifests of earlier runs, oldest first by modification time.
   * Only manifests are read here: a state's bytes are checked when it is
   * restored. Orphans, temporaries and foreign or unreadable manifests go.
   */
  private async load(): Promise<void> {
    const names = await fs.promises.readdir(this.dir);
    const kept = new Set<string>();
    const found: Array<{ view: SavedStateView; mtimeMs: number }> = [];
    for (const name of names.filter((n) => n.endsWith(".json"))) {
      const id = name.slice(0, -".json".length);
      try {
        // lstat first: a link planted in the directory is never followed (it is removed below).
        const stat = await fs.promises.lstat(this.stateFile(id));
        const manifestStat = await fs.promises.lstat(this.manifestFile(id));
        if (!stat.isFile() || !manifestStat.isFile()) throw new Error("not a regular file");
        const manifest: unknown = JSON.parse(await fs.promises.readFile(this.manifestFile(id), "utf8"));
        if (!isManifest(manifest) || manifest.model !== this.model || stat.size !== manifest.bytes) throw new Error("foreign or damaged");
        const mtimeMs = manifestStat.mtimeMs;
        found.push({ view: { id, tenant: manifest.tenant, tokens: manifest.tokens, bytes: manifest.bytes, lastUsed: 0 }, mtimeMs });
        kept.add(id);
      } catch {
        this.discarded++;
      }
    }
    for (const name of names) {
      const id = name.replace(/\.(kv|json)(\.tmp)?$/, "");
      // unlink, not rm: a planted symbolic link goes itself, whatever it points to.
      if (!kept.has(id)) await fs.promises.unlink(path.join(this.dir, name)).catch(() => undefined);
    }
    for (const { view } of found.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
      view.lastUsed = ++this.clock;
      this.entries.set(view.id, view);
    }
    for (const old of evictionsFor(this.entries.values(), this.maxBytes)) this.remove(old);
  }
}
