// `llamux serve` replicas as real child processes (each with its engine
// worker, in its own process group), for the tests of several replicas:
// started with the arguments and environment a test gives, ready once the
// "llamux ready" log line names its URL, stopped with SIGTERM (the group
// killed if it does not end) or killed with kill -9 like a crashed machine.
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { groupAlive } from "./processGroup.js";
import { REPO_ROOT, waitFor } from "./server.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");

export interface Replica {
  name: string;
  child: ChildProcess;
  url: string;
  exited: Promise<NodeJS.Signals | number | null>;
  output(): string;
}

export async function spawnReplica(name: string, args: string[], env: Record<string, string> = {}): Promise<Replica> {
  const child = spawn(process.execPath, [CLI, "serve", "--host", "127.0.0.1", "--port", "0", ...args], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LLAMUX_LOG_LEVEL: "info", ...env },
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)));
  try {
    await waitFor(() => /"msg":"llamux ready"/.test(out) || child.exitCode !== null, 90_000, `replica ${name} to be ready`);
    if (child.exitCode !== null) throw new Error(`replica ${name} exited`);
  } catch (err) {
    killReplica(child);
    throw new Error(`${(err as Error).message}; output: ${out}`);
  }
  const ready = JSON.parse(out.split("\n").find((l) => l.includes('"llamux ready"'))!) as { url: string };
  return { name, child, url: ready.url, exited, output: () => out };
}

/** kill -9 of the replica and its worker (the whole process group). */
export function killReplica(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  if (child.pid !== undefined && groupAlive(child.pid)) process.kill(-child.pid, signal);
}

/** SIGTERM (a clean drain), the group killed after 20 s; resolves once every process of it is gone. */
export async function stopReplica(r: Replica | null | undefined): Promise<void> {
  if (!r) return;
  if (r.child.exitCode === null && r.child.signalCode === null) {
    killReplica(r.child, "SIGTERM");
    const timer = setTimeout(() => killReplica(r.child), 20_000);
    await r.exited;
    clearTimeout(timer);
  }
  await waitFor(() => !groupAlive(r.child.pid!), 10_000, `replica ${r.name}'s worker to exit`).catch(() => killReplica(r.child));
}
