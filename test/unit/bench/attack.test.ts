// `llamux bench attack`'s pure parts: a row's statistics, the markdown table,
// and argument handling (refused before any server starts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ATTACKS, parseAttackArgs } from "../../../bench/attack.js";
import { attackTable, rowStats, tally, type AttackRow, type VictimSample } from "../../../bench/attackReport.js";
import { MODELS } from "../../integration/helpers/server.js";

const ok = (...ms: number[]): VictimSample[] => ms.map((ttftMs) => ({ ok: true, ttftMs }));
const failed = (n: number): VictimSample[] => Array.from({ length: n }, () => ({ ok: false, error: "HTTP 503 engine_restarted" }));
const row = (over: Partial<AttackRow>): AttackRow => ({
  id: "1",
  name: "x",
  skipped: null,
  alone: ok(10, 20, 30),
  underAttack: ok(20, 40, 60),
  attackerOutcomes: {},
  frontRssGrowthBytes: null,
  ...over,
});

describe("attack row statistics", () => {
  test("p50 alone and under attack, their ratio, and the target", () => {
    const s = rowStats(row({}));
    assert.equal(s.aloneP50Ms, 20);
    assert.equal(s.attackP50Ms, 40);
    assert.equal(s.ratio, 2);
    assert.equal(s.ok, true, "exactly 2x is within the target");
    assert.equal(rowStats(row({ underAttack: ok(20, 41, 60) })).ok, false);
  });

  test("failed victim requests are counted, left out of the p50, and miss the target", () => {
    const s = rowStats(row({ underAttack: [...ok(20), ...failed(2)] }));
    assert.equal(s.attackFailures, 2);
    assert.equal(s.attackP50Ms, 20);
    assert.equal(s.ok, false);
    const all = rowStats(row({ underAttack: failed(3) }));
    assert.ok(Number.isNaN(all.ratio));
    assert.equal(all.ok, false);
  });

  test("tally counts outcomes", () => {
    const o: Record<string, number> = {};
    for (const x of ["200", "400", "200", "timeout"]) tally(o, x);
    assert.deepEqual(o, { "200": 2, "400": 1, timeout: 1 });
  });
});

describe("attack table", () => {
  test("one markdown row per attempt, skipped rows with their reason", () => {
    const table = attackTable([
      row({ id: "4", name: "paths", attackerOutcomes: { "404": 3, "401": 2 } }),
      row({ id: "9", name: "unread", underAttack: [...ok(100), ...failed(1)], frontRssGrowthBytes: 3 * 1024 * 1024 }),
      row({ id: "11", name: "crash", skipped: "needs TinyStories" }),
    ]);
    const lines = table.split("\n");
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /^\| # \| attempt \| victim TTFT p50 alone \(ms\) \| under attack \(ms\) \| ratio \|/);
    assert.equal(lines[2], "| 4 | paths | 20 | 40 | 2.00× | 0/3 / 0/3 | yes | 401×2 404×3 |");
    assert.equal(lines[3], "| 9 | unread | 20 | 100 | 5.00× | 0/3 / 1/2 | **no** | front RSS +3.0 MiB |");
    assert.equal(lines[4], "| 11 | crash | | | | | skipped | needs TinyStories |");
    for (const l of lines) assert.equal(l.split("|").length, lines[0]!.split("|").length, l);
  });
});

describe("bench attack arguments", () => {
  test("every attempt of the issue is there", () => {
    assert.deepEqual(
      ATTACKS.map((a) => a.id),
      ["1", "2", "3", "4", "8", "9", "10", "11"],
    );
    const crash = ATTACKS.find((a) => a.id === "11")!;
    assert.equal(crash.skip!("TinyStories-656K-Q8_0"), null);
    assert.match(crash.skip!("stories260K")!, /needs --serve TinyStories-656K/);
  });

  test("parses --serve, --rows, --probes and the server's options", () => {
    const o = parseAttackArgs(["--serve", MODELS.stories260K, "--rows", "1, 4", "--probes", "5", "--", "--slots", "2"])!;
    assert.deepEqual(o.rows, ["1", "4"]);
    assert.equal(o.probes, 5);
    assert.deepEqual(o.serveArgs, ["--slots", "2"]);
    assert.equal(parseAttackArgs(["--help"]), null);
  });

  test("bad arguments are refused", () => {
    const cases: Array<[string[], RegExp]> = [
      [[], /needs --serve FILE/],
      [["--serve", "/nope.gguf"], /no such file/],
      [["--serve", MODELS.stories260K, "--rows", "5"], /no attempt '5'/],
      [["--serve", MODELS.stories260K, "--probes", "0"], /--probes must be/],
      [["--serve", MODELS.stories260K, "--", "--tenants", "x"], /sets --tenants itself/],
      [["--serve", MODELS.stories260K, "--", "--host=0.0.0.0"], /sets --host itself/],
    ];
    for (const [argv, want] of cases) assert.throws(() => parseAttackArgs(argv), want, argv.join(" "));
  });
});
