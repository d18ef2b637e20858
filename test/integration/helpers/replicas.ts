// llamux replicas as real processes (`llamux serve`, stories260K, one slot, one
// thread) on one database (LLAMUX_DATABASE_URL), for the tests of several
// replicas. Each runs in its own process group (its engine worker included),
// so kill -9 of a replica takes the whole of it, as a crashed host would.
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { groupAlive } from "./processGroup.js";
import { MODELS, REPO_ROOT, waitFor } from "./server.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
export const ADMIN_KEY = "admin-key-for-replica-tests-0123456789";
const SERVE = ["--model", MODELS.stories260K, "--slots", "1", "--threads", "1"];

export interface Replica {
  child: ChildProcess;
  url: string;
  exited: Promise<NodeJS.Signals | number | null>;
  output: () => string;
}

/** Starts a replica and waits until it is ready; `ctxPerSlot` 256 unless a test needs long runs. */
export async function spawnReplica(databaseUrl: string, dataDir: string, options: { ctxPerSlot?: number } = {}): Promise<Replica> {
  const args = [CLI, "serve", ...SERVE, "--ctx-per-slot", String(options.ctxPerSlot ?? 256), "--port", "0", "--data-dir", dataDir];
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LLAMUX_DATABASE_URL: databaseUrl, LLAMUX_ADMIN_KEY: ADMIN_KEY, LLAMUX_LOG_LEVEL: "info" },
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)));
  try {
    await waitFor(() => /"msg":"llamux ready"/.test(out), 90_000, "the ready log line");
  } catch (err) {
    killGroup(child);
    throw new Error(`${(err as Error).message}; output: ${out}`);
  }
  const ready = JSON.parse(out.split("\n").find((l) => l.includes('"llamux ready"'))!) as { url: string };
  return { child, url: ready.url, exited, output: () => out };
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  if (child.pid !== undefined && groupAlive(child.pid)) process.kill(-child.pid, signal);
}

/** SIGTERM (a clean stop), SIGKILL after 20 s; resolves once its worker is gone too. */
export async function stopReplica(r: Replica | null): Promise<void> {
  if (!r || r.child.exitCode !== null || r.child.signalCode !== null) return;
  killGroup(r.child, "SIGTERM");
  const timer = setTimeout(() => killGroup(r.child), 20_000);
  await r.exited;
  clearTimeout(timer);
  await waitFor(() => !groupAlive(r.child.pid!), 10_000, "the replica's worker to exit");
}
