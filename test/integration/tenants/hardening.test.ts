// A local llamux without tenants, against what a web page or a careless setup
// could do to it: cross-site text/plain and form POSTs, DNS rebinding (a
// foreign Host), loose file modes, guessable secrets, a corrupt database.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { scrape, sumOf } from "../helpers/metrics.js";
import { MODELS, REPO_ROOT, startTestServer, type TestServer } from "../helpers/server.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-hardening-"));
/** A data dir that exists before the server starts (the user's), with a loose db file in it. */
const userDataDir = path.join(dir, "user-data");
/** A data dir llamux creates itself. */
const ownDataDir = path.join(dir, "own", "data");

let t: TestServer;
let u: TestServer;
/** What u logged at warn level and above. */
const warnings: string[] = [];
before(async () => {
  fs.mkdirSync(userDataDir, { mode: 0o755 });
  fs.chmodSync(userDataDir, 0o755);
  fs.writeFileSync(path.join(userDataDir, "llamux.db"), "");
  fs.chmodSync(path.join(userDataDir, "llamux.db"), 0o644);
  // As an earlier llamux left it: its own KV directory, 0755.
  fs.mkdirSync(path.join(userDataDir, "kv-cache"));
  fs.chmodSync(path.join(userDataDir, "kv-cache"), 0o755);
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "128", "--data-dir", ownDataDir]);
  const log = pino({ level: "warn" }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
  u = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "128", "--data-dir", userDataDir], { log });
});
after(async () => {
  await t?.close();
  await u?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const chatBody = () => JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });

/** A raw request with the Host header we choose (fetch would not let us). */
function rawRequest(
  pathname: string,
  host: string | null,
  method = "GET",
  body?: string,
  contentType = "application/json",
): Promise<{ status: number; body: string }> {
  const url = new URL(t.url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (body !== undefined) Object.assign(headers, { "content-type": contentType, "content-length": String(Buffer.byteLength(body)) });
    const req = http.request({ hostname: url.hostname, port: url.port, path: pathname, method, headers, setHost: host !== null }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, body: text }));
    });
    if (host !== null) req.setHeader("host", host);
    req.on("error", reject);
    req.end(body);
  });
}

const mode = (file: string) => fs.statSync(file).mode & 0o777;

describe("cross-site requests to a local server", () => {
  test("a text/plain or form POST is refused with 415 and generates nothing; JSON works", async () => {
    const before = await scrape(t.url);
    for (const contentType of ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const res = await fetch(`${t.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": contentType }, body: chatBody() });
      assert.equal(res.status, 415, contentType);
      const err = ((await res.json()) as { error: { code: string; message: string; type: string } }).error;
      assert.equal(err.code, "unsupported_media_type");
      assert.equal(err.type, "invalid_request_error");
      assert.match(err.message, /application\/json/);
    }
    const after = await scrape(t.url);
    assert.equal(sumOf(after, "llamux_generations_total") - sumOf(before, "llamux_generations_total"), 0, "nothing was generated");
    const ok = await fetch(`${t.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: chatBody() });
    assert.equal(ok.status, 200);
    // Body-less requests need no Content-Type.
    assert.equal((await fetch(`${t.url}/v1/models`)).status, 200);
  });

  test("a foreign Host is refused with 421 on every route; loopback names with any port are served", async () => {
    for (const host of ["evil.example", `evil.example:${new URL(t.url).port}`, "127.0.0.1.nip.io"]) {
      for (const route of ["/health", "/v1/models", "/metrics"]) {
        const r = await rawRequest(route, host);
        assert.equal(r.status, 421, `${host} ${route}`);
        assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, "misdirected_request");
        assert.match(r.body, /localhost/);
      }
      const post = await rawRequest("/v1/chat/completions", host, "POST", chatBody());
      assert.equal(post.status, 421);
    }
    for (const host of ["localhost", "localhost:1234", `127.0.0.1:${new URL(t.url).port}`, "[::1]:80"]) {
      assert.equal((await rawRequest("/v1/models", host)).status, 200, host);
    }
    assert.equal((await rawRequest("/v1/chat/completions", "localhost", "POST", chatBody())).status, 200);
  });
});

describe("file modes", () => {
  test("directories llamux creates are 0700, the database and its WAL files 0600", async () => {
    // A stored response makes sure the WAL has been written to.
    const r = await t.client.responses.create({ model: t.modelId, input: "Hi", max_output_tokens: 16 });
    assert.match(r.id, /^resp_/);
    assert.equal(mode(ownDataDir), 0o700);
    assert.equal(mode(path.dirname(ownDataDir)), 0o700, "a missing parent is created owner-only too");
    assert.equal(mode(path.join(ownDataDir, "kv-cache")), 0o700);
    for (const f of ["llamux.db", "llamux.db-wal", "llamux.db-shm"]) assert.equal(mode(path.join(ownDataDir, f)), 0o600, f);
  });

  test("an existing data directory keeps its mode, with a warning; a loose database file and llamux's own KV directory are tightened", async () => {
    await u.client.responses.create({ model: u.modelId, input: "Hi", max_output_tokens: 16 });
    assert.equal(mode(userDataDir), 0o755);
    assert.ok(
      warnings.some((w) => w.includes(`the data directory ${userDataDir} has mode 0755`)),
      JSON.stringify(warnings),
    );
    assert.ok(!warnings.some((w) => w.includes("data directory") && w.includes(ownDataDir)));
    for (const f of ["llamux.db", "llamux.db-wal", "llamux.db-shm"]) assert.equal(mode(path.join(userDataDir, f)), 0o600, f);
    assert.equal(mode(path.join(userDataDir, "kv-cache")), 0o700);
  });

  test("no KV directory is created when KV saving is off", async () => {
    const off = path.join(dir, "kv-off");
    const s = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "128", "--data-dir", off, "--kv-cache-max-bytes", "0"]);
    try {
      assert.equal(fs.existsSync(path.join(off, "kv-cache")), false);
    } finally {
      await s.close();
    }
  });
});

describe("refused at start with one line", () => {
  const serve = (env: Record<string, string>, dataDir = path.join(dir, "cli-data")) =>
    spawnSync(process.execPath, [CLI, "serve", "--model", MODELS.stories260K, "--port", "0", "--data-dir", dataDir], {
      encoding: "utf8",
      env: { ...withoutLlamuxSecrets(), ...env },
      timeout: 60_000,
    });
  const withoutLlamuxSecrets = () => {
    const { LLAMUX_ADMIN_KEY: _a, LLAMUX_METRICS_TOKEN: _m, ...rest } = process.env;
    return rest;
  };
  const oneLine = (stderr: string) => stderr.trim().split("\n");

  test("a guessable LLAMUX_ADMIN_KEY or LLAMUX_METRICS_TOKEN", () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ LLAMUX_ADMIN_KEY: "0000000000000000" }, /^llamux: LLAMUX_ADMIN_KEY must be at least 16 characters .*pattern '0' repeated/],
      [{ LLAMUX_ADMIN_KEY: "abcdabcdabcdabcdabcd" }, /^llamux: LLAMUX_ADMIN_KEY .*pattern 'abcd' repeated/],
      [{ LLAMUX_ADMIN_KEY: "aaaaaaaabbbbbbbbc" }, /^llamux: LLAMUX_ADMIN_KEY .*too little entropy/],
      [{ LLAMUX_METRICS_TOKEN: "short" }, /^llamux: LLAMUX_METRICS_TOKEN must be at least 16 characters/],
    ];
    for (const [env, want] of cases) {
      // The other variable is set to a good value: only the one under test is refused.
      const r = serve({ LLAMUX_ADMIN_KEY: "x7Rq2LmZp9Wc4VnB8TyK", LLAMUX_METRICS_TOKEN: "Jd83kQz0PmX5vN2cTw7R", ...env });
      assert.equal(r.status, 1, JSON.stringify(env));
      assert.equal(oneLine(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, want);
      assert.doesNotMatch(r.stderr, /0000000000000000|abcdabcd|aaaaaaaabbbbbbbbc/, "the secret itself is never printed");
    }
  });

  test("a corrupt llamux.db names the file, without a stack trace", () => {
    const corrupt = path.join(dir, "corrupt");
    fs.mkdirSync(corrupt);
    fs.writeFileSync(path.join(corrupt, "llamux.db"), Buffer.alloc(8192, 0x41));
    const r = serve({}, corrupt);
    assert.equal(r.status, 1);
    const lines = oneLine(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `^llamux: the database ${path.join(corrupt, "llamux.db").replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} cannot be used \\(file is not a database\\)`,
      ),
    );
  });
});
