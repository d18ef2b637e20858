// Resident memory of a server's processes over time, read from /proc (Linux):
// the front by its pid, the engine worker as the front's child. One read of a
// small file per process per sample: cheap enough not to disturb what is
// measured (forking `ps` would not be, on a 2-core machine).
import { readFile } from "node:fs/promises";
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
  let children: number[];
  try {
    children = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8")).trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const c of children) {
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
    samples.filter((s) => s.atMs >= from && s.atMs <= to).map(pick).filter((v): v is number => v !== null);
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
