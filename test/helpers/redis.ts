// A real redis-server for a test, on a free loopback port, with nothing kept
// on disk. stop() and start() again reuse the port, so clients configured
// with its URL see an outage and a return (an empty Redis, as after a crash
// of one that persists nothing).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const CANDIDATES = [process.env.REDIS_SERVER, "/usr/bin/redis-server", "/usr/local/bin/redis-server"];

/** The redis-server binary, or null when it is not installed. */
export function redisServerBinary(): string | null {
  for (const c of CANDIDATES) if (c && fs.existsSync(c)) return c;
  const which = spawnSync("which", ["redis-server"], { encoding: "utf8" });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null;
}

/**
 * The option a test's describe() takes: skip with a message when
 * redis-server is missing, except under CI=true, where the test must fail
 * (CI installs it), so `skip` is false and startRedis() throws.
 */
export function skipWithoutRedis(): { skip: string | false } {
  if (redisServerBinary() !== null || process.env.CI === "true") return { skip: false };
  return { skip: "redis-server is not installed (apt-get install redis-server); CI=true makes this a failure" };
}

export interface TestRedis {
  port: number;
  url: string;
  /** Whether the server is running now. */
  readonly running: boolean;
  /** Stops the server (SIGTERM, then SIGKILL); the port stays reserved for start(). */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty. */
  start(): Promise<void>;
  /** Stops it for good and removes its directory. */
  close(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const bin = redisServerBinary();
  if (!bin) throw new Error("redis-server is not installed (apt-get install redis-server); it is required under CI=true");
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-redis-"));
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    if (child) return;
    const c = spawn(bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    c.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child = c;
    exited = new Promise((resolve) => c.once("exit", () => resolve()));
    const deadline = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (c.exitCode !== null) throw new Error(`redis-server exited with ${c.exitCode}: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port} within 10 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const stop = async () => {
    const c = child;
    if (!c) return;
    child = null;
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGTERM");
      const timer = setTimeout(() => c.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== null;
    },
    start,
    stop,
    close: async () => {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    let buf = "";
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on("error", () => done(false));
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
