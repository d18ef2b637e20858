// deploy/haproxy/haproxy.cfg is what `llamux haproxy-config` prints for its
// documented arguments, and HAProxy itself accepts it (haproxy -c); the
// generator refuses what would make a broken or ambiguous file.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { HAPROXY_DEFAULTS, haproxyConfig, type HaproxyOptions } from "../../../src/cluster/haproxyConfig.js";
import { parseDnsSpec, parseHaproxyConfigArgs, parseServerSpec } from "../../../src/cluster/haproxyConfigCli.js";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startAgent, type AgentServer, type ReplicaLoad } from "../../../src/cluster/agent.js";
import { findHaproxy, startHaproxy, waitForServers, type Haproxy } from "../../../bench/haproxyProcess.js";
import { roundRobinConfig } from "../../../bench/cluster.js";
import { REPO_ROOT } from "../../integration/helpers/server.js";

/** The arguments docs/cluster.md and the file's own header give. */
const SHIPPED_ARGS = [
  "--bind",
  "127.0.0.1:8080",
  "--server",
  "r1=127.0.0.1:8081/9081",
  "--server",
  "r2=127.0.0.1:8082/9082",
  "--server",
  "r3=127.0.0.1:8083/9083",
];
const SHIPPED = path.join(REPO_ROOT, "deploy/haproxy/haproxy.cfg");
const binary = findHaproxy();

function haproxyCheck(text: string): { status: number | null; output: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-haproxy-check-"));
  try {
    const file = path.join(dir, "haproxy.cfg");
    fs.writeFileSync(file, text);
    const r = spawnSync(binary!, ["-c", "-f", file], { encoding: "utf8", timeout: 30_000 });
    return { status: r.status, output: r.stdout + r.stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const options = (o: Partial<HaproxyOptions> = {}): HaproxyOptions => ({
  ...HAPROXY_DEFAULTS,
  servers: [{ name: "a", host: "10.0.0.1", port: 8080, agentPort: 9090 }],
  ...o,
});

describe("haproxyConfig", () => {
  test("deploy/haproxy/haproxy.cfg is the generator's output for the documented arguments", () => {
    assert.equal(
      fs.readFileSync(SHIPPED, "utf8"),
      haproxyConfig(parseHaproxyConfigArgs(SHIPPED_ARGS)!),
      `regenerate it: node dist/src/cli.js haproxy-config ${SHIPPED_ARGS.join(" ")}`,
    );
  });

  test("HAProxy accepts the shipped file and the generator's variations", {
    skip: !binary && process.env.CI !== "true" ? "haproxy not installed: skipped outside CI" : false,
  }, () => {
    assert.ok(binary, "haproxy is not installed (CI installs it with .ci/run)");
    for (const text of [
      fs.readFileSync(SHIPPED, "utf8"),
      haproxyConfig(options({ hashBalanceFactor: 0, statsSocket: "/run/haproxy.sock", bind: "[::]:80" })),
      haproxyConfig(options({ servers: [{ name: "v6", host: "[::1]", port: 1, agentPort: 2 }], checkIntervalMs: 250 })),
      // bench cluster's baseline.
      roundRobinConfig("127.0.0.1:1", "/tmp/x.sock", options().servers, 500),
    ]) {
      const r = haproxyCheck(text);
      assert.equal(r.status, 0, r.output);
      assert.doesNotMatch(r.output, /WARNING/, r.output);
    }
    // The check can fail: a broken file is refused.
    assert.notEqual(haproxyCheck(haproxyConfig(options()).replace("balance hash", "balance hsah")).status, 0);
  });

  test("the affinity rules: learnt ids first, then the key chain; the agent sends 'state' only where keys are hashed", () => {
    const text = haproxyConfig(options());
    const affinity = text.slice(text.indexOf("\nbackend llamux_affinity"), text.indexOf("\nbackend llamux_balanced"));
    const balanced = text.slice(text.indexOf("\nbackend llamux_balanced"), text.indexOf("\nbackend llamux_ids"));
    assert.ok(affinity.indexOf("stick match var(txn.prev)") < affinity.indexOf("stick on var(txn.keyhash)"));
    assert.match(affinity, /hash-type consistent/);
    assert.match(affinity, /hash-balance-factor 150/);
    assert.match(affinity, /agent-send "state\\n"/);
    assert.doesNotMatch(balanced, /agent-send/);
    for (const b of [affinity, balanced]) {
      assert.match(b, /stick store-response res\.hdr\(x-llamux-response-id\) table llamux_ids/);
      assert.match(b, /stick store-response res\.hdr\(x-llamux-conversation-id\) table llamux_ids/);
      // weight 100: HAProxy applies the agent's N % as weight × N / 100 in integers, so the default weight 1 made every answer under 100 % a weight of 0.
      assert.match(b, /server a 10\.0\.0\.1:8080 weight 100 check inter 1s fall 2 rise 2 agent-check agent-inter 1s agent-port 9090/);
    }
    const keys = [...text.matchAll(/set-var\(txn\.key[,)].*/g)].map((m) => m[0]);
    const order = ["x-session-id", "txn.conv", "prompt_cache_key", "txn.m0", "$.user", "safety_identifier"];
    assert.deepEqual(
      order.map((k) => keys.findIndex((l) => l.includes(k))),
      order.map((_, i) => i),
      keys.join("\n"),
    );
    assert.doesNotMatch(haproxyConfig(options({ hashBalanceFactor: 0 })), /hash-balance-factor/);
  });

  test("refuses what HAProxy would refuse or route by chance", () => {
    const bad: Array<[Partial<HaproxyOptions>, RegExp]> = [
      [{ servers: [] }, /at least one server/],
      [{ servers: [{ name: "a b", host: "h", port: 1, agentPort: 2 }] }, /server name/],
      [
        {
          servers: [
            { name: "a", host: "h", port: 1, agentPort: 2 },
            { name: "a", host: "h", port: 3, agentPort: 4 },
          ],
        },
        /used twice/,
      ],
      [{ servers: [{ name: "a", host: "h", port: 70000, agentPort: 2 }] }, /bad port/],
      [{ servers: [{ name: "a", host: "h;x", port: 1, agentPort: 2 }] }, /bad host/],
      [{ hashBalanceFactor: 50 }, /hash balance factor/],
      [{ bufferBytes: 1024 }, /buffer/],
      [{ bind: "8080" }, /bind/],
      [{ checkIntervalMs: 0 }, /check interval/],
      [{ statsSocket: "/tmp/a b" }, /stats socket/],
    ];
    for (const [o, message] of bad) assert.throws(() => haproxyConfig(options(o)), message);
  });
});

// The real HAProxy with the generated configuration and the real agent (its
// load a plain value here); the replicas are plain HTTP servers answering 200,
// since what is checked is HAProxy's arithmetic on the agent's answer.
describe("haproxyConfig under a real HAProxy: the agent's weights", {
  skip: !binary && process.env.CI !== "true" ? "haproxy not installed: skipped outside CI" : false,
}, () => {
  test("a busy replica keeps a weight above 0, and a request with every replica busy is served, not answered 503", async () => {
    assert.ok(binary, "haproxy is not installed (CI installs it with .ci/run)");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-haproxy-weight-"));
    // One request running on one of 6 slots: the agent answers "up ready 85%".
    const busy: ReplicaLoad = { accepting: true, models: [{ state: "ready", slots: 6, running: 1, waiting: 0, maxQueued: 8 }] };
    const started: Array<{ http: http.Server; agent: AgentServer }> = [];
    let haproxy: Haproxy | undefined;
    try {
      for (let i = 0; i < 2; i++) {
        const server = http.createServer((_req, res) => res.end("ok"));
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        started.push({ http: server, agent: await startAgent("127.0.0.1", 0, () => busy) });
      }
      haproxy = await startHaproxy({
        binary: binary!,
        dir,
        servers: started.map((s, i) => ({ name: `r${i + 1}`, host: "127.0.0.1", port: (s.http.address() as AddressInfo).port, agentPort: s.agent.port })),
        options: { checkIntervalMs: 100 },
      });
      // Before the fix the weight was 1 × 85 / 100 = 0 in integers, and the leastconn backend had no server left.
      const stats = await waitForServers(haproxy, (st) => st.some((x) => x.backend === "llamux_balanced" && x.weight === 85), "the agent's 85 % applied");
      const balanced = stats.filter((x) => x.backend === "llamux_balanced");
      await waitForServers(haproxy, (st) => st.filter((x) => x.backend === "llamux_balanced").every((x) => x.weight === 85), "both replicas at 85 %");
      assert.equal(balanced.length, 2);
      const res = await fetch(`${haproxy.url}/v1/models`);
      assert.equal(res.status, 200, await res.text());
      // The hashing backend hears the state only: full weight, so keys do not move with the load.
      const affinity = (await haproxy.stats()).filter((x) => x.backend === "llamux_affinity");
      assert.deepEqual(
        affinity.map((x) => x.weight),
        [100, 100],
      );
    } finally {
      await haproxy?.stop();
      for (const s of started.reverse()) {
        await s.agent.close();
        await new Promise<void>((resolve) => s.http.close(() => resolve()));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("haproxyConfig with DNS discovery", () => {
  const dns = { fqdn: "llamux-replicas.ns.svc.cluster.local", port: 8080, agentPort: 9090, slots: 8 };
  test("server-template slots filled from the name's records, in both backends, with a resolvers section", () => {
    const text = haproxyConfig(options({ servers: [], discovery: dns }));
    const templates = text.split("\n").filter((l) => l.startsWith("    server-template"));
    assert.equal(templates.length, 2);
    for (const l of templates)
      assert.match(
        l,
        /^ {4}server-template r 8 llamux-replicas\.ns\.svc\.cluster\.local:8080 weight 100 check .* agent-port 9090.* resolvers llamux_dns init-addr none$/,
      );
    assert.equal(templates.filter((l) => l.includes('agent-send "state\\n"')).length, 1);
    assert.match(text, /^resolvers llamux_dns\n {4}parse-resolv-conf$/m);
    assert.doesNotMatch(text, /^ {4}server /m);
  });

  test("servers and discovery together, or bad discovery values, are refused", () => {
    assert.throws(() => haproxyConfig(options({ discovery: dns })), /not both/);
    assert.throws(() => haproxyConfig(options({ servers: [], discovery: { ...dns, fqdn: "a b" } })), /DNS name/);
    assert.throws(() => haproxyConfig(options({ servers: [], discovery: { ...dns, slots: 0 } })), /slots/);
    assert.deepEqual(parseDnsSpec("x.y:1/2", 3), { fqdn: "x.y", port: 1, agentPort: 2, slots: 3 });
    assert.throws(() => parseDnsSpec("x.y:1", 3), /NAME:PORT\/AGENT_PORT/);
  });
});

describe("llamux haproxy-config arguments", () => {
  test("--server NAME=HOST:PORT/AGENT_PORT, IPv6 in brackets", () => {
    assert.deepEqual(parseServerSpec("r1=10.0.0.5:8080/9090"), { name: "r1", host: "10.0.0.5", port: 8080, agentPort: 9090 });
    assert.deepEqual(parseServerSpec("v6=[fd00::1]:80/81"), { name: "v6", host: "[fd00::1]", port: 80, agentPort: 81 });
    for (const bad of ["r1", "r1=host:80", "=h:1/2", "r1=h:x/2", "r1=h:1/2/3"]) assert.throws(() => parseServerSpec(bad), /NAME=HOST:PORT\/AGENT_PORT/, bad);
  });

  test("options fall back to the defaults; numbers must be whole", () => {
    const o = parseHaproxyConfigArgs(["--server", "a=h:1/2", "--hash-balance-factor", "0", "--timeout-ms", "5000"])!;
    assert.equal(o.hashBalanceFactor, 0);
    assert.equal(o.clientTimeoutMs, 5000);
    assert.equal(o.serverTimeoutMs, 5000);
    assert.equal(o.checkIntervalMs, HAPROXY_DEFAULTS.checkIntervalMs);
    assert.throws(() => parseHaproxyConfigArgs(["--server", "a=h:1/2", "--fall", "two"]), /--fall/);
    assert.equal(parseHaproxyConfigArgs(["--help"]), null);
  });
});
