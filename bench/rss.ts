// Resident memory of a server's processes over time, read from /proc (Linux):
// the front by its pid, the engine worker as the front's child. One read of a
// small file per process per sample: cheap enough not to disturb what is
// measured (forking `ps` would not be, on a 2-core machine). Also which pages
// summed RSS counts twice (doubleCountedBytes), from the processes' page maps.
import { open, readFile } from "node:fs/promises";
import { median } from "./stats.js";

export interface RssSample {
  /** performance.now() when taken. */
  atMs: number;
  /** null when the process could not be read (gone, or no /proc). */
  frontBytes: number | null;
  workerBytes: number | null;
}

/** VmRSS of `pid` in bytes; null when it cannot be read. */
export async function readRssBytes(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The child processes of `pid` whose command line runs the engine worker. */
export async function workerPidsOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const c of await childPidsOf(pid)) {
    const cmd = await readFile(`/proc/${c}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("worker.js")) out.push(c);
  }
  return out;
}

export interface RssTarget {
  /** The front process; null: not sampled. */
  frontPid: number | null;
  /**
   * The worker's pid now (it changes when the worker is restarted); default:
   * the front's worker child. Returns undefined when unknown.
   */
  workerPid?: () => number | undefined | Promise<number | undefined>;
}

/** Samples RSS every `everyMs` until stop(); start() takes the first sample at once. */
export class RssSampler {
  readonly samples: RssSample[] = [];
  private timer: NodeJS.Timeout | null = null;
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly target: RssTarget,
    private readonly everyMs = 1000,
  ) {}

  start(): void {
    if (this.timer || this.target.frontPid === null) return;
    const tick = () => {
      this.pending = this.sample();
    };
    tick();
    this.timer = setInterval(tick, this.everyMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.pending;
  }

  private async sample(): Promise<void> {
    const front = this.target.frontPid;
    if (front === null) return;
    const workerPid = this.target.workerPid ? await this.target.workerPid() : (await workerPidsOf(front))[0];
    const [frontBytes, workerBytes] = await Promise.all([readRssBytes(front), workerPid === undefined ? null : readRssBytes(workerPid)]);
    this.samples.push({ atMs: performance.now(), frontBytes, workerBytes });
  }
}

export interface RssSummary {
  /** Median over the window just after warm-up. */
  baselineBytes: number | null;
  /** Median over the last window of the run. */
  endBytes: number | null;
  peakBytes: number | null;
  /** endBytes / baselineBytes − 1; null without both. */
  growth: number | null;
}

/**
 * Growth of one process's RSS after warm-up: the median of the samples in
 * the first `windowFraction` of [warmEndMs, endMs] against the median of the
 * last `windowFraction`. Medians, because a garbage collection or a freed
 * buffer moves single samples a lot and the trend little. Pure.
 */
export function rssSummary(
  samples: readonly RssSample[],
  pick: (s: RssSample) => number | null,
  warmEndMs: number,
  endMs: number,
  windowFraction = 0.2,
): RssSummary {
  const span = Math.max(0, endMs - warmEndMs);
  const values = (from: number, to: number) =>
    samples
      .filter((s) => s.atMs >= from && s.atMs <= to)
      .map(pick)
      .filter((v): v is number => v !== null);
  const all = samples.map(pick).filter((v): v is number => v !== null);
  const base = values(warmEndMs, warmEndMs + span * windowFraction);
  const end = values(endMs - span * windowFraction, endMs);
  const baselineBytes = base.length > 0 ? median(base) : null;
  const endBytes = end.length > 0 ? median(end) : null;
  return {
    baselineBytes,
    endBytes,
    peakBytes: all.length > 0 ? Math.max(...all) : null,
    growth: baselineBytes !== null && endBytes !== null && baselineBytes > 0 ? endBytes / baselineBytes - 1 : null,
  };
}

/** The children of `pid` (from /proc/PID/task/PID/children); [] when it cannot be read. */
export async function childPidsOf(pid: number): Promise<number[]> {
  try {
    return (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8")).trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const PAGE_BYTES = 4096;

/** A file-backed mapping of a process (/proc/PID/maps), by the file's device and inode. */
interface FileMapping {
  start: number;
  end: number;
  file: string;
}

async function fileMappings(pid: number): Promise<FileMapping[]> {
  const out: FileMapping[] = [];
  for (const line of (await readFile(`/proc/${pid}/maps`, "utf8")).split("\n")) {
    // start-end perms offset dev inode [path]
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ (\S+) (\d+)/.exec(line);
    if (!m || m[5] === "0" || m[3]!.startsWith("---")) continue;
    out.push({ start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), file: `${m[4]}:${m[5]}` });
  }
  return out;
}

/**
 * The physical frame of every resident page in `ranges` of `pid`'s address
 * space, from /proc/PID/pagemap (bit 63: present; bits 0–54: the frame).
 * null when the frames are hidden, as they are without CAP_SYS_ADMIN (they read 0).
 */
async function residentFrames(pid: number, ranges: FileMapping[]): Promise<Float64Array | null> {
  const pages = ranges.reduce((n, r) => n + (r.end - r.start) / PAGE_BYTES, 0);
  const buf = Buffer.alloc(pages * 8);
  const fh = await open(`/proc/${pid}/pagemap`, "r");
  try {
    let at = 0;
    for (const r of ranges) {
      const end = at + ((r.end - r.start) / PAGE_BYTES) * 8;
      let position = (r.start / PAGE_BYTES) * 8;
      while (at < end) {
        const { bytesRead } = await fh.read(buf, at, end - at, position);
        if (bytesRead === 0) throw new Error(`short read of /proc/${pid}/pagemap`);
        at += bytesRead;
        position += bytesRead;
      }
    }
  } finally {
    await fh.close();
  }
  const frames = new Float64Array(pages);
  let n = 0;
  for (let i = 0; i < pages; i++) {
    const high = buf.readUInt32LE(i * 8 + 4);
    if ((high & 0x80000000) === 0) continue;
    const frame = (high & 0x7fffff) * 2 ** 32 + buf.readUInt32LE(i * 8);
    if (frame === 0) return null;
    frames[n++] = frame;
  }
  return frames.subarray(0, n);
}

/** How many distinct values the arrays hold together. */
export function distinctCount(arrays: readonly Float64Array[]): number {
  const all = new Float64Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) all.set(a, at), (at += a.length);
  all.sort();
  let n = 0;
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) n++;
  return n;
}

/**
 * Bytes that summing the RSS of `pids` counts more than once: pages two or
 * more of them map, such as the node binary's code in both llamux's front and
 * its worker. Summed RSS minus this is what the processes occupy together,
 * each physical page once. (PSS instead splits a shared page among all the
 * processes on the machine that map it, the benchmark client included, so it
 * reads low.) Only file-backed pages can be shared here: the processes are
 * separate programs (fork + exec), so their anonymous memory is their own.
 * The pages of files that more than one of `pids` maps are compared by
 * physical frame. null when a process cannot be read or the frames are hidden
 * (without CAP_SYS_ADMIN).
 */
export async function doubleCountedBytes(pids: readonly number[]): Promise<number | null> {
  try {
    const maps = await Promise.all(pids.map(fileMappings));
    const mappedBy = new Map<string, number>();
    for (const m of maps) for (const file of new Set(m.map((r) => r.file))) mappedBy.set(file, (mappedBy.get(file) ?? 0) + 1);
    const frames: Float64Array[] = [];
    for (const [i, pid] of pids.entries()) {
      const f = await residentFrames(
        pid,
        maps[i]!.filter((r) => mappedBy.get(r.file)! > 1),
      );
      if (f === null) return null;
      frames.push(f);
    }
    return (frames.reduce((n, f) => n + f.length, 0) - distinctCount(frames)) * PAGE_BYTES;
  } catch {
    return null;
  }
}
