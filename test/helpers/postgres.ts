// A real PostgreSQL server for a test file: initdb into a temp dir, postgres on
// a free loopback port (and a private socket dir), fsync on as in production.
// As root (PostgreSQL refuses to run as root) the binaries run as the
// `postgres` user, in directories it owns. One server per test file; each
// test takes a fresh database of its own (createDatabase). stop() is a fast
// shutdown (SIGINT) and start() brings the same data back on the same port,
// for outage tests. Everything is removed by destroy().
//
// Without the binaries the tests that need them skip with the reason, except
// under CI=true, where a missing binary is a failure (CI installs them).
import { execFile, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);

const BIN_DIRS = [
  process.env.LLAMUX_TEST_PG_BIN,
  "/usr/lib/postgresql/17/bin",
  "/usr/lib/postgresql/16/bin",
  "/usr/lib/postgresql/15/bin",
  "/usr/lib/postgresql/14/bin",
].filter((d): d is string => typeof d === "string" && d.length > 0);
const BIN_DIR = BIN_DIRS.find((d) => fs.existsSync(path.join(d, "initdb")) && fs.existsSync(path.join(d, "postgres"))) ?? null;

/** Why PostgreSQL tests cannot run here; null when they can. Throws under CI=true instead of returning a reason. */
export const postgresMissing: string | null = (() => {
  if (BIN_DIR) return null;
  const why = `PostgreSQL server binaries not found (looked in ${BIN_DIRS.join(", ")}; set LLAMUX_TEST_PG_BIN): install Debian's postgresql package`;
  if (process.env.CI === "true") throw new Error(why);
  return why;
})();

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust auth on loopback only). */
  url: string;
  port: number;
  /** Creates a fresh empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Fast shutdown (SIGINT: running transactions are rolled back, connections cut); resolves once it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same data directory and port. */
  start(): Promise<void>;
  /** Stops it and removes its directories. */
  destroy(): Promise<void>;
}

function postgresUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const line = fs
    .readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("running as root, but there is no `postgres` user to run PostgreSQL as");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

let databases = 0;

export async function startPostgres(): Promise<PostgresServer> {
  if (!BIN_DIR) throw new Error(postgresMissing ?? "no PostgreSQL binaries");
  const user = postgresUser();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-pg-"));
  fs.chmodSync(root, 0o755); // the postgres user must be able to enter it
  const dataDir = path.join(root, "data");
  const socketDir = path.join(root, "socket");
  for (const d of [dataDir, socketDir]) {
    fs.mkdirSync(d, { mode: 0o700 });
    if (user) fs.chownSync(d, user.uid, user.gid);
  }
  const asUser = user ? { uid: user.uid, gid: user.gid } : {};
  const env = { ...process.env, LC_ALL: "C", HOME: root };
  await run(path.join(BIN_DIR, "initdb"), ["-D", dataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"], { ...asUser, env, cwd: root });
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let log = "";

  const start = async () => {
    log = "";
    const args = [
      "-D",
      dataDir,
      "-p",
      String(port),
      "-k",
      socketDir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "fsync=on",
      "-c",
      "max_connections=200",
      "-c",
      "shared_buffers=16MB",
    ];
    const c = spawn(path.join(BIN_DIR!, "postgres"), args, { ...asUser, env, cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    child = c;
    c.stdout!.on("data", (d: Buffer) => (log += d.toString()));
    c.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    exited = new Promise((resolve) => c.once("exit", () => resolve()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`postgres exited at start: ${log}`);
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        await client.query("SELECT 1");
        await client.end();
        return;
      } catch {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 30 s: ${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const signal = async (sig: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(sig);
    await exited;
    child = null;
  };

  await start();
  return {
    url,
    port,
    createDatabase: async (name = `t${process.pid}_${++databases}`) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop: () => signal("SIGINT"),
    start,
    destroy: async () => {
      await signal("SIGINT");
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
