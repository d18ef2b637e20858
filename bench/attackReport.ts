// `llamux bench attack`'s pure parts: a row's statistics from the victim's
// samples, and the markdown table. No I/O.
import { median } from "./stats.js";

/** One victim request: its TTFT when it got a first output, or why it failed. */
export type VictimSample = { ok: true; ttftMs: number } | { ok: false; error: string };

export interface AttackRow {
  /** The number for the attempt ("1", "2", ... "11"). */
  id: string;
  name: string;
  /** Why the row was not run (e.g. the model it needs is not served); null when it ran. */
  skipped: string | null;
  alone: VictimSample[];
  underAttack: VictimSample[];
  /** What the attacker's requests got: HTTP status (or "error", "timeout") → count. */
  attackerOutcomes: Record<string, number>;
  /** Front RSS growth during the attack, bytes; null when not sampled. */
  frontRssGrowthBytes: number | null;
}

export interface RowStats {
  aloneP50Ms: number;
  attackP50Ms: number;
  /** attackP50Ms / aloneP50Ms; NaN when either is unknown. */
  ratio: number;
  /** Victim requests that failed, alone and under attack. */
  aloneFailures: number;
  attackFailures: number;
  /** Within the target: ratio ≤ maxRatio and no victim request failed under attack. */
  ok: boolean;
}

/** The TTFTs of the successful samples. */
export function ttfts(samples: readonly VictimSample[]): number[] {
  return samples.flatMap((s) => (s.ok ? [s.ttftMs] : []));
}

export function rowStats(row: Pick<AttackRow, "alone" | "underAttack">, maxRatio = 2): RowStats {
  const aloneP50Ms = median(ttfts(row.alone));
  const attackP50Ms = median(ttfts(row.underAttack));
  const ratio = attackP50Ms / aloneP50Ms;
  const attackFailures = row.underAttack.filter((s) => !s.ok).length;
  return {
    aloneP50Ms,
    attackP50Ms,
    ratio,
    aloneFailures: row.alone.filter((s) => !s.ok).length,
    attackFailures,
    ok: Number.isFinite(ratio) && ratio <= maxRatio && attackFailures === 0,
  };
}

/** Adds one outcome to a tally. */
export function tally(outcomes: Record<string, number>, outcome: string): void {
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
}

const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(n < 10 ? 1 : 0) : "–");
const mib = (bytes: number | null) => (bytes === null ? "" : `front RSS +${(bytes / 1024 ** 2).toFixed(1)} MiB`);
const outcomesText = (o: Record<string, number>) =>
  Object.entries(o)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}×${v}`)
    .join(" ");

/** The markdown table: one row per attempt, the victim's TTFT p50 alone and under attack, failures, the attacker's outcomes. */
export function attackTable(rows: readonly AttackRow[], maxRatio = 2): string {
  const lines = [
    `| # | attempt | victim TTFT p50 alone (ms) | under attack (ms) | ratio | victim failures (alone / attack) | within ${maxRatio}× | attacker got |`,
    "|---|---|---:|---:|---:|---:|:---:|---|",
  ];
  for (const r of rows) {
    if (r.skipped !== null) {
      lines.push(`| ${r.id} | ${r.name} | | | | | skipped | ${r.skipped} |`);
      continue;
    }
    const s = rowStats(r, maxRatio);
    const ratio = Number.isFinite(s.ratio) ? `${s.ratio.toFixed(2)}×` : "–";
    lines.push(
      `| ${r.id} | ${r.name} | ${ms(s.aloneP50Ms)} | ${ms(s.attackP50Ms)} | ${ratio} | ${s.aloneFailures}/${r.alone.length} / ${s.attackFailures}/${r.underAttack.length} | ${s.ok ? "yes" : "**no**"} | ${[outcomesText(r.attackerOutcomes), mib(r.frontRssGrowthBytes)].filter(Boolean).join("; ")} |`,
    );
  }
  return lines.join("\n");
}
