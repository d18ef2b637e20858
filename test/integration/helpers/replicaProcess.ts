// `llamux serve` as a child process in its own process group, for tests that
// must kill a replica the hard way (kill -9) and check that nothing is left.
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { REPO_ROOT } from "./server.js";
import { groupAlive } from "./processGroup.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");

export interface ReplicaProcess {
  url: string;
  pid: number;
  /** The last of its stderr. */
  log(): string;
  /** SIGKILL to the front process only, as `kill -9 PID` would; resolves once the whole group (its engine worker too) is gone. */
  kill9(): Promise<void>;
  /** SIGTERM (a graceful drain), then SIGKILL to the group if it lingers. */
  stop(): Promise<void>;
}

/**
 * Starts `llamux serve` on 127.0.0.1:port with `args`, and resolves once
 * /ready answers 200. `whileLoading` runs every 20 ms until then (e.g. to ask
 * the agent what it says meanwhile).
 */
export async function startReplicaProcess(
  port: number,
  args: readonly string[],
  env: Record<string, string>,
  whileLoading?: () => Promise<void>,
): Promise<ReplicaProcess> {
  const child: ChildProcess = spawn(process.execPath, [CLI, "serve", "--host", "127.0.0.1", "--port", String(port), "--log-level", "warn", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
    env: { ...process.env, ...env },
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8000)));
  let gone = false;
  const exited = new Promise<void>((resolve) => child.once("exit", () => ((gone = true), resolve())));
  const pid = child.pid!;
  const groupGone = async (timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (groupAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (groupAlive(pid)) process.kill(-pid, "SIGKILL");
    while (groupAlive(pid)) await new Promise((r) => setTimeout(r, 20));
  };
  const stop = async () => {
    if (!gone) {
      child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, 30_000)))]);
      clearTimeout(timer);
    }
    await groupGone(5000);
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (gone) throw new Error(`llamux serve exited before it was ready: ${stderr}`);
    const ready = await fetch(`${url}/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`llamux serve was not ready in time: ${stderr}`);
    }
    await whileLoading?.();
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    url,
    pid,
    log: () => stderr,
    async kill9() {
      if (!gone) process.kill(pid, "SIGKILL");
      await exited;
      // The worker notices its parent's IPC channel close and exits by itself.
      await groupGone(10_000);
    },
    stop,
  };
}
