// `llamux serve` as a child process for benchmarks that measure a server
// they start themselves (`bench soak --serve FILE`, `bench overload --serve
// FILE`): a free port, warn-level logs (an access line per request would cost
// the CPU being measured), ready when /ready says so, stopped with SIGTERM.
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));

export interface LlamuxProcess {
  url: string;
  /** The model id clients use: the file name without .gguf. */
  model: string;
  pid: number;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Starts `llamux serve --model FILE ...args` and resolves once it is ready (`timeoutMs` for the model to load). */
export async function startLlamux(modelFile: string, args: readonly string[], timeoutMs = 300_000): Promise<LlamuxProcess> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI, "serve", "--model", modelFile, "--host", "127.0.0.1", "--port", String(port), "--log-level", "warn", ...args],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (graceMs = 60_000) => {
    if (gone) return;
    child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (!gone) {
      child.kill("SIGKILL");
      await exited;
    }
  };
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (gone) throw new Error(`llamux serve exited before it was ready: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
    const ready = await fetch(`${url}/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (performance.now() > deadline) {
      await stop(5000);
      throw new Error(`llamux serve was not ready after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, model: path.basename(modelFile).replace(/\.gguf$/i, ""), pid: child.pid!, stop };
}
