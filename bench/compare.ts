// Medians over repeated, interleaved runs: on a shared, noisy machine one run
// of anything is a sample, not a measurement. Reads the JSON written by
// `bench ceiling --json` and `bench --json` and prints one table.
import fs from "node:fs";
import type { CeilingLevel } from "./ceiling.js";
import type { LevelResult } from "./loadgen.js";
import { percentile } from "./stats.js";

export interface CompareRow {
  concurrency: number;
  ceiling: number;
  servers: Array<{ name: string; tokensPerSecond: number; ratio: number; ttftP50: number; itlP50: number; runs: number[] }>;
}

const median = (xs: number[]) => percentile(xs, 50);

export function compare(ceilingRuns: CeilingLevel[][], servers: Array<{ name: string; runs: LevelResult[][] }>): CompareRow[] {
  const levels = [...new Set(ceilingRuns.flat().map((l) => l.concurrency))].sort((a, b) => a - b);
  return levels.map((c) => {
    const ceilings = ceilingRuns
      .flat()
      .filter((l) => l.concurrency === c)
      .map((l) => l.outputTokensPerSecond);
    const ceiling = median(ceilings);
    return {
      concurrency: c,
      ceiling,
      servers: servers.map((s) => {
        const mine = s.runs.flat().filter((l) => l.concurrency === c);
        const tps = mine.map((l) => l.outputTokensPerSecond);
        return {
          name: s.name,
          tokensPerSecond: median(tps),
          ratio: pairedRatio(tps, ceilings),
          ttftP50: median(mine.map((l) => l.ttftMs.p50)),
          itlP50: median(mine.map((l) => l.itlMs.p50)),
          runs: tps,
        };
      }),
    };
  });
}

/**
 * A server's throughput over the ceiling at one level. With as many server
 * runs as ceiling runs, given in the order they were measured, the k-th run
 * is divided by the k-th ceiling (run-core.sh measures each pair back to
 * back) and the median of those ratios is taken: the machine's drift over a
 * run, which on a shared host reaches 20 %, cancels within each pair instead
 * of landing on whichever side ran later. Otherwise: median over median.
 */
export function pairedRatio(server: readonly number[], ceiling: readonly number[]): number {
  if (server.length === 0 || ceiling.length === 0) return NaN;
  if (server.length !== ceiling.length) return median([...server]) / median([...ceiling]);
  return median(server.map((s, k) => s / ceiling[k]!));
}

export function compareTable(rows: CompareRow[]): string {
  const names = rows[0]?.servers.map((s) => s.name) ?? [];
  const head = ["streams", "ceiling tok/s", ...names.flatMap((n) => [`${n} tok/s`, `${n} / ceiling`, `${n} TTFT p50 ms`, `${n} ITL p50 ms`])];
  const lines = [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`];
  for (const r of rows) {
    const cells = r.servers.flatMap((s) => [s.tokensPerSecond.toFixed(1), s.ratio.toFixed(3), s.ttftP50.toFixed(0), s.itlP50.toFixed(1)]);
    lines.push(`| ${r.concurrency} | ${r.ceiling.toFixed(1)} | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

/** `llamux bench compare --ceiling a.json,b.json --server llamux=x.json,y.json [--server name=...]` */
export function compareMain(args: { ceiling: string[]; servers: string[] }): string {
  const read = <T>(f: string) => (JSON.parse(fs.readFileSync(f, "utf8")) as { levels: T[] }).levels;
  const servers = args.servers.map((spec) => {
    const [name, files] = spec.split("=");
    if (!name || !files) throw new Error(`--server wants NAME=FILE[,FILE...], got '${spec}'`);
    return { name, runs: files.split(",").map((f) => read<LevelResult>(f)) };
  });
  return compareTable(
    compare(
      args.ceiling.map((f) => read<CeilingLevel>(f)),
      servers,
    ),
  );
}
