// The real HAProxy (Debian's haproxy 2.6) in front of llamux replicas, for
// benchmarks and tests that start it themselves: a configuration on a free
// port, HAProxy in the foreground, its runtime API on a unix socket, and a
// stop that waits for it to exit.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { haproxyConfig, HAPROXY_DEFAULTS, type HaproxyOptions, type HaproxyServer } from "../src/cluster/haproxyConfig.js";

/** The haproxy binary on PATH or in /usr/sbin; null when there is none. */
export function findHaproxy(): string | null {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), "/usr/sbin", "/usr/local/sbin"];
  for (const dir of dirs) {
    const file = path.join(dir, "haproxy");
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** One line of HAProxy's `show stat` for a server. */
export interface ServerStat {
  backend: string;
  server: string;
  /** UP, DOWN, DRAIN, MAINT, "UP 1/2"... */
  status: string;
  weight: number;
  /** Sessions sent to it since HAProxy started. */
  total: number;
}

export interface Haproxy {
  url: string;
  config: string;
  /** Every server of every backend, from the runtime API. */
  stats(): Promise<ServerStat[]>;
  /** A runtime API command's answer. */
  command(cmd: string): Promise<string>;
  log(): string;
  stop(): Promise<void>;
}

export interface HaproxyStart {
  binary: string;
  dir: string;
  servers: readonly HaproxyServer[];
  options?: Partial<Omit<HaproxyOptions, "servers" | "bind" | "statsSocket">>;
  /** Another configuration than llamux's generated one (a baseline), given where to listen and the admin socket. */
  config?: (bind: string, statsSocket: string) => string;
}

/** Starts HAProxy and resolves once it listens (servers may still be coming UP: see waitForServers). */
export async function startHaproxy(o: HaproxyStart): Promise<Haproxy> {
  const port = await freePort();
  const socket = path.join(o.dir, "haproxy.sock");
  const bind = `127.0.0.1:${port}`;
  const config = o.config ? o.config(bind, socket) : haproxyConfig({ ...HAPROXY_DEFAULTS, ...o.options, servers: o.servers, bind, statsSocket: socket });
  const file = path.join(o.dir, "haproxy.cfg");
  fs.writeFileSync(file, config);
  const child: ChildProcess = spawn(o.binary, ["-db", "-f", file], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const keep = (b: Buffer) => (log = (log + b.toString()).slice(-8000));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let gone = false;
  const exited = new Promise<void>((resolve) => child.once("exit", () => ((gone = true), resolve())));
  const stop = async () => {
    if (gone) return;
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.kill("SIGTERM");
    await exited;
    clearTimeout(timer);
  };
  const command = (cmd: string) =>
    new Promise<string>((resolve, reject) => {
      const s = net.connect(socket);
      let text = "";
      s.on("connect", () => s.write(`${cmd}\n`));
      s.on("data", (d) => (text += d.toString()));
      s.on("end", () => resolve(text));
      s.on("error", reject);
    });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (gone) throw new Error(`haproxy exited: ${log}`);
    const up = await command("show info").then(
      () => true,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    config,
    command,
    async stats() {
      const text = await command("show stat");
      const [header, ...rows] = text.trim().split("\n");
      const cols = header!.replace(/^# /, "").split(",");
      const at = (name: string) => cols.indexOf(name);
      return rows
        .map((r) => r.split(","))
        .filter((f) => f[at("svname")] !== "FRONTEND" && f[at("svname")] !== "BACKEND")
        .map((f) => ({
          backend: f[at("pxname")]!,
          server: f[at("svname")]!,
          status: f[at("status")]!,
          weight: Number(f[at("weight")]),
          total: Number(f[at("stot")]),
        }));
    },
    log: () => log,
    stop,
  };
}

/** Resolves once `pred` holds for the servers' stats (every `intervalMs`), or throws after `timeoutMs` with the last stats. */
export async function waitForServers(h: Haproxy, pred: (stats: ServerStat[]) => boolean, what: string, timeoutMs = 20_000): Promise<ServerStat[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await h.stats();
    if (pred(stats)) return stats;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(stats)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
