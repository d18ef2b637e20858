// A cluster on loopback as it is deployed: the real HAProxy (configured by
// `haproxyConfig`, as deploy/haproxy/haproxy.cfg is) in front of three llamux
// replicas on stories260K that share one real PostgreSQL (--database-url:
// tenants, stored responses, conversations) and one real redis-server
// (--redis-url: quotas). Conversations of all three kinds go back to the
// replica holding their KV cache; a replica killed with -9 under load loses
// its traffic to the others within the health-check interval, its
// conversations continue on the survivors and no stored response is lost; a
// replica whose model reloads, or that drains, gets no new requests.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { after, before, describe, test } from "node:test";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { CONVERSATION_ID_HEADER, REPLICA_HEADER, RESPONSE_ID_HEADER } from "../../../src/cluster/haproxyConfig.js";
import { findHaproxy, freePort, startHaproxy, waitForServers, type Haproxy, type ServerStat } from "../../../bench/haproxyProcess.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../helpers/postgres.js";
import { skipWithoutRedis, startRedis, type TestRedis } from "../../helpers/redis.js";
import { startReplicaProcess, type ReplicaProcess } from "../helpers/replicaProcess.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const KEY = "lmx-clusterClusterClusterClusterClusterC01";
const MODEL = "stories260K";
const CHECK_MS = 300;
const FALL = 2;
// Slots for every conversation a survivor may hold after the kill (up to 13 at
// once on one replica), so a moved conversation's cache is not evicted by LRU.
const MODEL_ARGS = ["--model", MODELS.stories260K, "--slots", "16", "--ctx-per-slot", "512", "--threads", "1"];

const binary = findHaproxy();
// Under CI a missing haproxy fails the run (CI installs it); elsewhere the file is skipped.
const skip = !binary && process.env.CI !== "true" ? "haproxy not installed: skipped outside CI" : (postgresMissing ?? skipWithoutRedis().skip);

function askAgent(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let text = "";
    s.on("data", (d) => (text += d.toString()));
    s.on("end", () => resolve(text));
    s.on("error", reject);
  });
}

interface Turn {
  replica: string;
  prompt: number;
  cached: number;
}

type Kind = "chat" | "responses" | "conversation";

/** One conversation: its turns so far, and how to take the next one. */
interface Conversation {
  kind: Kind;
  name: string;
  turns: Turn[];
  /** The last response's id (Responses kinds). */
  lastId?: string;
  /** Every response id it produced (Responses kinds). */
  ids: string[];
  conversationId?: string;
  next(text: string): Promise<Turn>;
}

function conversation(client: OpenAI, kind: Kind, name: string): Conversation {
  const turns: Turn[] = [];
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: "system", content: `You tell short stories. This one is called ${name}.` }];
  let previous: string | undefined;
  let conversationId: string | undefined;
  const record = (t: Turn) => (turns.push(t), t);
  const self: Conversation = {
    kind,
    name,
    turns,
    ids: [],
    async next(text) {
      if (kind === "chat") {
        messages.push({ role: "user", content: text });
        const { data, response } = await client.chat.completions
          .create({ model: MODEL, messages, max_tokens: 16, temperature: 0, prompt_cache_key: name } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming)
          .withResponse();
        messages.push({ role: "assistant", content: data.choices[0]!.message.content ?? "" });
        return record({
          replica: response.headers.get(REPLICA_HEADER) ?? "?",
          prompt: data.usage!.prompt_tokens,
          cached: data.usage!.prompt_tokens_details?.cached_tokens ?? 0,
        });
      }
      if (kind === "conversation" && conversationId === undefined)
        self.conversationId = conversationId = (await client.conversations.create({ metadata: { name } })).id;
      const { data, response } = await client.responses
        .create({
          model: MODEL,
          input: text,
          max_output_tokens: 16,
          temperature: 0,
          ...(kind === "responses"
            ? { instructions: `You tell short stories. This one is called ${name}.`, ...(previous ? { previous_response_id: previous } : {}) }
            : { conversation: conversationId! }),
        })
        .withResponse();
      previous = data.id;
      self.lastId = data.id;
      self.ids.push(data.id);
      return record({
        replica: response.headers.get(REPLICA_HEADER) ?? "?",
        prompt: data.usage!.input_tokens,
        cached: data.usage!.input_tokens_details?.cached_tokens ?? 0,
      });
    },
  };
  return self;
}

/** Turns after the first whose cached tokens cover the whole previous prompt. */
function covered(c: Conversation, from = 1): { hit: number; of: number } {
  let hit = 0;
  let of = 0;
  for (let i = Math.max(1, from); i < c.turns.length; i++) {
    of++;
    if (c.turns[i]!.cached >= c.turns[i - 1]!.prompt) hit++;
  }
  return { hit, of };
}

const TOPICS = ["a red ball", "a dog named Max", "the sun", "a big tree", "a little bird", "a cake"];
const say = (turn: number, name = "") => `${turn === 0 ? `Once upon a time ${name} met` : "Tell me more about"} ${TOPICS[turn % TOPICS.length]}.`;

describe("HAProxy in front of three llamux replicas", { skip }, () => {
  let dir: string;
  let r1: TestServer | undefined;
  let r2: TestServer | undefined;
  let r3: ReplicaProcess | undefined;
  let r3AgentPort = 0;
  let r3Port = 0;
  let replicaArgs: string[] = [];
  const r3Args = () => [...replicaArgs, "--agent-port", String(r3AgentPort), "--data-dir", path.join(dir, "r3")];
  let haproxy: Haproxy | undefined;
  let client: OpenAI;
  let pg: PostgresServer | undefined;
  let redis: TestRedis | undefined;
  /** The agent's answers heard while r3's /ready was not yet 200. */
  const heardWhileLoading: string[] = [];

  before(async () => {
    if (!binary) throw new Error("haproxy is not installed (CI installs it with .ci/run)");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-cluster-"));
    pg = await startPostgres();
    const databaseUrl = await pg.createDatabase();
    redis = await startRedis();
    const tenants = path.join(dir, "tenants.yaml");
    fs.writeFileSync(tenants, `tenants:\n  - id: acme\n    keys: ["${hashApiKey(KEY)}"]\n`);
    // Every replica on the same database and Redis; only KV state files stay per replica (--data-dir).
    replicaArgs = [...MODEL_ARGS, "--tenants", tenants, "--database-url", databaseUrl, "--redis-url", redis.url, "--redis-replicas", "3"];
    const args = [...replicaArgs, "--agent-port", "0"];
    r1 = await startTestServer(args, { apiKey: KEY });
    r2 = await startTestServer(args, { apiKey: KEY });
    // The one that will be killed runs as its own process.
    const port = await freePort();
    r3AgentPort = await freePort();
    r3Port = port;
    r3 = await startReplicaProcess(port, r3Args(), {}, async () => {
      const said = await askAgent(r3AgentPort).catch(() => null);
      if (
        said !== null &&
        (await fetch(`http://127.0.0.1:${port}/ready`).then(
          (r) => r.status,
          () => 0,
        )) !== 200
      )
        heardWhileLoading.push(said);
    });
    const server = (name: string, url: string, agentPort: number) => ({ name, host: "127.0.0.1", port: Number(new URL(url).port), agentPort });
    haproxy = await startHaproxy({
      binary,
      dir,
      servers: [server("r1", r1.url, r1.srv.agentPort!), server("r2", r2.url, r2.srv.agentPort!), server("r3", r3.url, r3AgentPort)],
      options: { checkIntervalMs: CHECK_MS, fall: FALL, rise: 1 },
    });
    await waitForServers(haproxy, (s) => s.length === 6 && s.every((x) => x.status === "UP"), "every replica UP in both backends");
    client = new OpenAI({ baseURL: `${haproxy.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
  });

  after(async () => {
    await haproxy?.stop();
    await r3?.stop();
    await r2?.close();
    await r1?.close();
    await redis?.close();
    await pg?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a replica says drain while its model loads, and ready with a weight once it serves", async () => {
    assert.ok(heardWhileLoading.length > 0, "the agent answered while the model loaded");
    assert.deepEqual([...new Set(heardWhileLoading)], ["drain\n"]);
    assert.match(await askAgent(r3AgentPort), /^up ready \d+%\n$/);
  });

  test("an agent port already in use fails the start with one clear error", async () => {
    await assert.rejects(
      startTestServer([...replicaArgs, "--agent-port", String(r1!.srv.agentPort)]),
      /cannot listen for agent checks on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
    );
  });

  test("a replica names each response and conversation it creates in a header, for the balancer to learn", async () => {
    const { data: conv, response: convHttp } = await r1!.client.conversations.create({}).withResponse();
    assert.equal(convHttp.headers.get(CONVERSATION_ID_HEADER), conv.id);
    for (const stream of [false, true]) {
      const res = await fetch(`${r1!.url}/v1/responses`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, input: "Hi", max_output_tokens: 16, stream }),
      });
      const text = await res.text();
      const id = res.headers.get(RESPONSE_ID_HEADER);
      assert.match(id ?? "", /^resp_/);
      assert.ok(text.includes(`"id":"${id}"`), "the header names the response in the body");
    }
  });

  test("twelve conversations, four of each kind: each turn returns to the replica holding its KV cache", async (t) => {
    const all = (["chat", "responses", "conversation"] as const).flatMap((kind) => [0, 1, 2, 3].map((i) => conversation(client, kind, `${kind}-${i}`)));
    const TURNS = 4;
    await Promise.all(
      all.map(async (c) => {
        for (let t = 0; t < TURNS; t++) await c.next(say(t, c.name));
      }),
    );
    let hit = 0;
    let of = 0;
    for (const c of all) {
      const r = covered(c);
      hit += r.hit;
      of += r.of;
    }
    const detail = all.map((c) => `${c.name}: ${c.turns.map((t) => `${t.replica} ${t.cached}/${t.prompt}`).join(", ")}`).join("\n");
    t.diagnostic(`${hit} of ${of} turns after the first had the previous turn's prompt cached`);
    assert.equal(of, 12 * (TURNS - 1));
    assert.ok(hit >= 0.9 * of, `only ${hit} of ${of} turns had the previous prompt cached:\n${detail}`);
    // Spread: the keys do not all land on one replica.
    const replicas = new Set(all.map((c) => c.turns[0]!.replica));
    assert.ok(replicas.size >= 2, `every conversation on ${[...replicas]}:\n${detail}`);
    // Stored responses are readable through the balancer: a read by id goes where the response is.
    for (const c of all.filter((x) => x.kind !== "chat")) {
      const got = await client.responses.retrieve(c.lastId!);
      assert.equal(got.id, c.lastId);
    }
  });

  test("without a prompt_cache_key, a chat's first messages are its key: each conversation stays on one replica", async () => {
    // No prompt_cache_key, no user: only the system prompt and the first message identify a conversation.
    const plain = [0, 1, 2, 3].map((i) => {
      const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: "system", content: `You tell short stories. This one is called fallback-${i}.` }];
      const replicas: string[] = [];
      const cached: Array<[number, number]> = [];
      return {
        replicas,
        cached,
        async next(text: string) {
          messages.push({ role: "user", content: text });
          const { data, response } = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0 }).withResponse();
          messages.push({ role: "assistant", content: data.choices[0]!.message.content ?? "" });
          replicas.push(response.headers.get(REPLICA_HEADER) ?? "?");
          cached.push([data.usage!.prompt_tokens_details?.cached_tokens ?? 0, data.usage!.prompt_tokens]);
        },
      };
    });
    const placed = async () => Number(/used:(\d+)/.exec(await haproxy!.command("show table llamux_affinity"))![1]);
    const placedBefore = await placed();
    await Promise.all(
      plain.map(async (p, i) => {
        for (let t = 0; t < 3; t++) await p.next(say(t, `fallback-${i}`));
      }),
    );
    // Each conversation got one key, placed once (by the hash) and remembered.
    assert.equal((await placed()) - placedBefore, 4);
    for (const p of plain) {
      assert.equal(new Set(p.replicas).size, 1, `moved: ${p.replicas}`);
      for (let t = 1; t < p.cached.length; t++) assert.ok(p.cached[t]![0] >= p.cached[t - 1]![1], `turn ${t + 1} not cached: ${JSON.stringify(p.cached)}`);
    }
  });

  test("kill -9 of a replica under load: every conversation completes on the survivors, within the health-check interval, and no stored response is lost", async (t) => {
    // Conversations of every kind until each kind has one on the victim
    // (chat: placed by its key's hash; Responses and conversations: their
    // first turn goes to the least loaded replica).
    const all: Conversation[] = [];
    const onVictim = (kind: Kind) => all.filter((c) => c.kind === kind && c.turns[0]?.replica === "r3").length;
    for (let i = 0; (["chat", "responses", "conversation"] as const).some((k) => onVictim(k) < (k === "chat" ? 2 : 1)); i++) {
      assert.ok(i < 40, `too few conversations placed on r3 in 40 rounds: ${all.map((c) => `${c.name} ${c.turns[0]!.replica}`)}`);
      const round = (["chat", "responses", "conversation"] as const)
        .filter((k) => onVictim(k) < (k === "chat" ? 2 : 1))
        .map((k) => conversation(client, k, `failover-${k}-${i}`));
      await Promise.all(round.map((c) => c.next(say(0, c.name))));
      all.push(...round);
    }
    await Promise.all(all.map((c) => c.next(say(1))));
    // Under load: every conversation's next turn in flight, and streams, when the victim dies.
    const victimChat = all.find((c) => c.kind === "chat" && c.turns[0]!.replica === "r3")!;
    const turns = Promise.allSettled(all.map((c) => c.next(say(2))));
    // Streams keyed like a conversation on the victim, so they run there; the kill comes once each has sent its first chunk.
    const started: Array<() => void> = [];
    const streamReplicas: string[] = [];
    const streams = [0, 1, 2].map(async (i) => {
      let chunks = 0;
      let replica = "";
      try {
        const { data: stream, response } = await client.chat.completions
          .create(
            { model: MODEL, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 440, stream: true },
            { headers: { "x-session-id": victimChat.name } },
          )
          .withResponse();
        replica = response.headers.get(REPLICA_HEADER) ?? "?";
        streamReplicas.push(replica);
        for await (const _ of stream) if (chunks++ === 0) started[i]!();
      } finally {
        started[i]!();
      }
      return `${replica}: ${chunks} chunks`;
    });
    const streamed = Promise.allSettled(streams);
    await Promise.all([0, 1, 2].map((i) => new Promise<void>((r) => (started[i] = r))));
    const killedAt = Date.now();
    const killed = r3!.kill9();
    // HAProxy marks it down within fall × inter (plus one interval and scheduling slack).
    const down = waitForServers(
      haproxy!,
      (st) => st.filter((x) => x.server === "r3").every((x) => x.status.startsWith("DOWN")),
      "r3 marked DOWN",
      (FALL + 1) * CHECK_MS + 3000,
    ).then(() => Date.now() - killedAt);
    // Non-streamed requests in flight on the victim come back empty and are retried on a survivor (retry-on empty-response): none fails.
    const outcomes = await turns;
    const failed = outcomes.flatMap((o, i) => (o.status === "rejected" ? [`${all[i]!.name}: ${(o.reason as Error).message}`] : []));
    assert.deepEqual(failed, [], "turns in flight when r3 died failed");
    // A stream whose headers went out cannot be saved: it completes (it ran elsewhere, or ended before the kill) or is cut with an error; none hangs.
    const streamOutcomes = (await streamed).map((o) => (o.status === "fulfilled" ? `completed (${o.value})` : `cut: ${(o.reason as Error).message}`));
    t.diagnostic(`streams keyed to r3 at the kill: ${streamOutcomes.join("; ")}`);
    // x-session-id is a key like any other: the streams ran on the victim's replica.
    assert.deepEqual(streamReplicas, ["r3", "r3", "r3"]);
    const downAfterMs = await down;
    await killed;
    // Every conversation continues on a survivor, answered from the shared
    // store (Responses: previous_response_id; conversations: their items).
    await Promise.all(all.map((c) => c.next(say(3))));
    await Promise.all(all.map((c) => c.next(say(4))));
    const detail = all.map((c) => `${c.name}: ${c.turns.map((x) => `${x.replica} ${x.cached}/${x.prompt}`).join(", ")}`).join("\n");
    for (const c of all) {
      assert.ok(
        c.turns.slice(3).every((x) => x.replica !== "r3"),
        `${c.name} answered by the dead replica:\n${detail}`,
      );
      // Moved once, then kept: the turn after the move reads its history from the new replica's cache.
      assert.equal(c.turns[4]!.replica, c.turns[3]!.replica, `${c.name} moved again:\n${detail}`);
      assert.ok(c.turns[4]!.cached >= c.turns[3]!.prompt, `${c.name}: the turn after the move was not cached:\n${detail}`);
      // Each turn's prompt holds the whole history: nothing was lost in the move.
      for (let i = 1; i < c.turns.length; i++)
        assert.ok(c.turns[i]!.prompt > c.turns[i - 1]!.prompt, `${c.name}: turn ${i + 1}'s prompt does not grow:\n${detail}`);
    }
    // Conversations that never were on the victim did not move.
    for (const c of all.filter((x) => x.turns[0]!.replica !== "r3"))
      assert.equal(new Set(c.turns.map((x) => x.replica)).size, 1, `${c.name} moved:\n${detail}`);
    // No stored response is lost: every one, the dead replica's included, is read back through the balancer.
    for (const c of all.filter((x) => x.kind !== "chat")) {
      for (const id of c.ids) assert.equal((await client.responses.retrieve(id)).id, id);
    }
    for (const c of all.filter((x) => x.kind === "conversation")) {
      const items = await client.conversations.items.list(c.conversationId!, { limit: 100 });
      const answers = items.data.filter((x) => x.type === "message" && x.role === "assistant").length;
      assert.ok(answers >= c.turns.length, `${c.name}: ${answers} answers stored for ${c.turns.length} turns`);
    }
    t.diagnostic(`r3 marked DOWN ${downAfterMs} ms after kill -9 (checks every ${CHECK_MS} ms, fall ${FALL})`);
  });

  test("a replica that restarts gets no requests while its model loads, and takes new ones once it serves", async () => {
    const sent = async () => (await haproxy!.stats()).filter((x) => x.server === "r3").reduce((n, x) => n + x.total, 0);
    const before = await sent();
    const served: string[] = [];
    let loading = true;
    // Keyless requests all along the load, balanced by HAProxy.
    const traffic = (async () => {
      while (loading) {
        const { response } = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 2 }).withResponse();
        served.push(response.headers.get(REPLICA_HEADER) ?? "?");
      }
    })();
    const heard: string[] = [];
    // HAProxy's session count for r3, read while its /ready still said 503
    // (once it says 200, HAProxy may take r3 back at its next check).
    let sentWhileLoading = before;
    let servedWhileLoading = 0;
    try {
      r3 = await startReplicaProcess(r3Port, r3Args(), {}, async () => {
        const said = await askAgent(r3AgentPort).catch(() => null);
        const count = await sent();
        const done = served.length;
        if (
          (await fetch(`http://127.0.0.1:${r3Port}/ready`).then(
            (r) => r.status,
            () => 0,
          )) === 200
        )
          return;
        if (said !== null) heard.push(said);
        sentWhileLoading = count;
        servedWhileLoading = done;
      });
    } finally {
      loading = false;
      await traffic;
    }
    assert.ok(servedWhileLoading > 0, "no request was answered while r3 loaded");
    assert.ok(!served.slice(0, servedWhileLoading).includes("r3"), `served while loading by ${served}`);
    assert.equal(sentWhileLoading, before, "HAProxy sent r3 a request while it loaded");
    assert.ok(
      heard.every((x) => x === "drain\n"),
      `agent said ${heard}`,
    );
    await waitForServers(haproxy!, (st) => st.filter((x) => x.server === "r3").every((x) => x.status === "UP"), "r3 back UP");
    // Back in rotation: keys whose hash points at it land there again.
    const again: string[] = [];
    for (let i = 0; !again.includes("r3"); i++) {
      assert.ok(i < 40, `r3 got none of 40 new conversations: ${again}`);
      const c = conversation(client, "chat", `rejoin-${i}`);
      again.push((await c.next(say(0, c.name))).replica);
    }
  });

  test("a replica whose engine worker dies gets no new requests while the model reloads", async () => {
    // kill -9 of r3's engine worker only: the front restarts it and reloads the model, its agent saying drain meanwhile.
    const worker = Number(
      execFileSync("ps", ["-o", "pid=", "--ppid", String(r3!.pid)], { encoding: "utf8" })
        .trim()
        .split(/\s+/)[0],
    );
    assert.ok(worker > 0, "r3 has an engine worker");
    process.kill(worker, "SIGKILL");
    await waitForServers(haproxy!, (st) => st.filter((x) => x.server === "r3").every((x) => !x.status.startsWith("UP")), "r3 out of rotation while it reloads");
    const sent = async () => (await haproxy!.stats()).filter((x) => x.server === "r3").reduce((n, x) => n + x.total, 0);
    const before = await sent();
    const served: string[] = [];
    const ready = () =>
      fetch(`${r3!.url}/ready`).then(
        (r) => r.status === 200,
        () => false,
      );
    let reloaded = false;
    for (let i = 0; !reloaded; i++) {
      assert.ok(i < 200, "r3 did not reload its model");
      const c = conversation(client, "chat", `reload-${i}`);
      served.push((await c.next(say(0, c.name))).replica);
      reloaded = await ready();
    }
    assert.ok(!served.includes("r3"), `served while reloading by ${served}`);
    // Sessions counted up to the moment /ready said 200 again (HAProxy may take r3 back right after).
    assert.equal(await sent(), before, "HAProxy sent r3 a request while its model reloaded");
    await waitForServers(haproxy!, (st) => st.filter((x) => x.server === "r3").every((x) => x.status === "UP"), "r3 back UP after the reload");
  });

  test("a draining replica gets no new requests: the agent says drain and HAProxy stops sending", async () => {
    // A conversation already placed on r2, to continue once r2 drains.
    let sticky: Conversation | undefined;
    for (let i = 0; !sticky; i++) {
      assert.ok(i < 40, "no key placed on r2 in 40 tries");
      const c = conversation(client, "chat", `sticky-${i}`);
      await c.next(say(0, c.name));
      if (c.turns[0]!.replica === "r2") sticky = c;
    }
    const before = await haproxy!.stats();
    const sent = (stats: ServerStat[], server: string) => stats.filter((s) => s.server === server).reduce((n, s) => n + s.total, 0);
    // A request still uploading its body keeps r2's drain open (it counts as in flight).
    const port = Number(new URL(r2!.url).port);
    const slow = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => slow.once("connect", () => resolve()));
    slow.on("error", () => undefined);
    slow.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{`,
    );
    await new Promise((r) => setTimeout(r, 100));
    const closing = r2!.close();
    try {
      assert.equal(await askAgent(r2!.srv.agentPort!), "drain\n");
      await waitForServers(
        haproxy!,
        (s) => s.filter((x) => x.server === "r2").every((x) => x.status.startsWith("DRAIN") || x.status.startsWith("DOWN") || x.status.startsWith("NOLB")),
        "r2 out of rotation",
      );
      const mid = await haproxy!.stats();
      const chats = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => conversation(client, "chat", `after-drain-${i}`));
      const results = await Promise.all([
        ...chats.map((c) => c.next(say(0))),
        ...[0, 1, 2, 3].map(async () =>
          (await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 4 }).withResponse()).response.headers.get(REPLICA_HEADER),
        ),
      ]);
      const replicas = results.map((r) => (typeof r === "string" || r === null ? r : r.replica));
      assert.ok(
        replicas.every((r) => r === "r1" || r === "r3"),
        `served by ${replicas}`,
      );
      assert.equal(sent(await haproxy!.stats(), "r2"), sent(mid, "r2"), "HAProxy sent r2 a request while it drained");
      assert.ok(sent(mid, "r2") >= sent(before, "r2"));
      // The conversation placed on r2 continues elsewhere: HAProxy skips the
      // replica once it is down, and until then retries its 503 on another.
      const moved = await sticky.next(say(1));
      assert.ok(moved.replica === "r1" || moved.replica === "r3", `continued on ${moved.replica}`);
    } finally {
      slow.destroy();
      await closing;
    }
  });
});
