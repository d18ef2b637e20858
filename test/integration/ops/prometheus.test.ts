// A real Prometheus (Debian's `prometheus` package; .ci/run installs it)
// scrapes a real llamux server: the exposition parses, PromQL over it gives
// back what the server's own responses said, and every query of the Grafana
// dashboard (deploy/grafana/) is PromQL Prometheus accepts. The server requires
// LLAMUX_METRICS_TOKEN on /metrics, and Prometheus scrapes with it, as a
// deployment would (scrape_configs' `authorization: credentials`).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { allQueries, asSentToPrometheus, loadDashboard } from "../../helpers/grafanaDashboard.js";
import { MODELS, startTestServer } from "../helpers/server.js";

function findPrometheus(): string | null {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), "/usr/bin"];
  for (const dir of dirs) {
    const file = path.join(dir, "prometheus");
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

interface Vector {
  status: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

/** A running Prometheus: its query API, its log, and a stop that waits for it to exit. */
interface Prometheus {
  query(promql: string): Promise<Vector>;
  log(): string;
  exited: Promise<string>;
  stop(): Promise<void>;
}

const METRICS_TOKEN = "metrics-token-for-prometheus-tests-42";

function startPrometheus(binary: string, dir: string, target: string, port: number): Prometheus {
  const config = path.join(dir, "prometheus.yml");
  fs.writeFileSync(
    config,
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: llamux",
      "    metrics_path: /metrics",
      "    authorization:",
      `      credentials: ${METRICS_TOKEN}`,
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(
    binary,
    [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  const keep = (b: Buffer) => (log = (log + b.toString()).slice(-8000));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<string>((resolve) => child.once("exit", (code, signal) => resolve(`prometheus exited (${signal ?? code})`)));
  return {
    async query(promql) {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`);
      return (await res.json()) as Vector;
    },
    log: () => log,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.kill("SIGTERM");
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `promql` until it returns one sample equal to `want`; fails with the last answer and Prometheus' log. */
async function expectValue(p: Prometheus, promql: string, want: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    const answer = await Promise.race([p.query(promql).catch((err: Error) => err), p.exited]);
    if (typeof answer === "string") assert.fail(`${answer} while querying ${promql}:\n${p.log()}`);
    if (!(answer instanceof Error) && answer.status === "success" && answer.data.result.length === 1) {
      if (Number(answer.data.result[0]!.value[1]) === want) return;
    }
    last = answer instanceof Error ? answer.message : JSON.stringify(answer.data);
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${promql}: wanted ${want}, last answer ${last}\nprometheus log:\n${p.log()}`);
}

const binary = findPrometheus();
const missing = "prometheus is not installed (apt-get install prometheus; .ci/run does it)";

describe("Prometheus scraping llamux", () => {
  test("PromQL over the scraped metrics gives back the tokens and finishes the responses reported", {
    skip: !binary && !process.env.CI ? `${missing}: skipped outside CI` : false,
  }, async () => {
    assert.ok(binary, `${missing}, and CI must run this test`);
    const t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256"], { env: { LLAMUX_METRICS_TOKEN: METRICS_TOKEN } });
    try {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-prometheus-"));
      try {
        let completionTokens = 0;
        for (const prompt of ["Once upon a time", "The little dog"]) {
          const r = await t.client.completions.create({ model: t.modelId, prompt, max_tokens: 7, ignore_eos: true } as never);
          assert.equal(r.choices[0]!.finish_reason, "length");
          completionTokens += r.usage!.completion_tokens;
        }
        assert.equal(completionTokens, 14);
        // The token is required: without it the scrape is refused.
        assert.equal((await fetch(`${t.url}/metrics`)).status, 401);
        const prom = startPrometheus(binary, dir, new URL(t.url).host, await freePort());
        try {
          const labels = `model="${t.modelId}",tenant="default"`;
          await expectValue(prom, `llamux_completion_tokens_total{${labels}}`, completionTokens, 30_000);
          await expectValue(prom, `llamux_generations_total{${labels},status="ok",finish_reason="length"}`, 2, 10_000);
          await expectValue(prom, `up{job="llamux"}`, 1, 10_000);
          // The shape of query the dashboard uses: a quantile over histogram buckets.
          const median = await prom.query(`histogram_quantile(0.5, sum by (le) (llamux_prefill_seconds_bucket{model="${t.modelId}"}))`);
          assert.equal(median.status, "success");
          const seconds = Number(median.data.result[0]?.value[1]);
          assert.ok(seconds > 0 && seconds < 30, `median prefill ${seconds}s`);
          // Every query of the Grafana dashboard is PromQL this Prometheus accepts.
          const queries = allQueries(loadDashboard()).filter((q) => q.kind === "promql");
          assert.ok(queries.length > 10);
          const refused: string[] = [];
          for (const q of queries) {
            const answer = await prom.query(asSentToPrometheus(q.expr));
            if (answer.status !== "success") refused.push(`${q.where}: ${JSON.stringify(answer)}`);
          }
          assert.deepEqual(refused, [], "dashboard queries Prometheus refused");
        } finally {
          await prom.stop();
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      await t.close();
    }
  });
});
