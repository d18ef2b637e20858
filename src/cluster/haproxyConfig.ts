// An HAProxy 2.6 configuration for llamux replicas (`llamux haproxy-config`;
// deploy/haproxy/haproxy.cfg is its output for three replicas on one host).
// Routing and health belong to HAProxy; llamux's part is to be easy to route:
// the agent check (src/cluster/agent.ts), /ready, and the response id header.
import { AGENT_STATE_ONLY } from "./agent.js";
// What each line is for is said in the comments the config carries, so an
// operator who edits the generated file still has the reasons in front of them.

export interface HaproxyServer {
  /** HAProxy's name for the replica (letters, digits, - _ . :). */
  name: string;
  host: string;
  port: number;
  /** The replica's --agent-port. */
  agentPort: number;
}

/**
 * Replicas found in DNS instead of listed (Kubernetes: a headless Service):
 * HAProxy keeps `slots` server slots filled from the name's A records.
 */
export interface HaproxyDiscovery {
  fqdn: string;
  port: number;
  agentPort: number;
  /** The most replicas there may be. */
  slots: number;
}

export interface HaproxyOptions {
  /** Where HAProxy listens for clients: "127.0.0.1:8080", ":8080", "[::]:8080". */
  bind: string;
  servers: readonly HaproxyServer[];
  /** When set, the replicas come from DNS and `servers` must be empty. */
  discovery?: HaproxyDiscovery | null;
  /** Health and agent check interval; a dead replica is out after `fall` of them. */
  checkIntervalMs: number;
  /** Failed checks that take a replica out (and passed ones that bring it back). */
  fall: number;
  rise: number;
  /**
   * Consistent hashing with bounded load: a key whose replica has more than
   * this percentage of the average load goes to the next one on the ring
   * (HAProxy's hash-balance-factor; 0: off, else ≥ 100).
   */
  hashBalanceFactor: number;
  /**
   * tune.bufsize: rules read the request body only as far as one buffer holds
   * (minus headers and 1 KiB), so keys must sit within it. Every request still
   * uploading holds one buffer.
   */
  bufferBytes: number;
  maxConnections: number;
  /** Inactivity limits: above the longest silence of a response (the TTFT of the largest prompt, or a whole non-streamed generation). */
  clientTimeoutMs: number;
  serverTimeoutMs: number;
  /** Learnt response and conversation ids, and keys' placements, are forgotten after this long (then a turn is placed like a new one). */
  stickMs: number;
  /** An admin socket for the runtime API (`show servers state`, `set server ... state drain`); null: none. */
  statsSocket: string | null;
}

export const HAPROXY_DEFAULTS: Omit<HaproxyOptions, "servers" | "statsSocket"> & { statsSocket: string | null } = {
  bind: "127.0.0.1:8080",
  checkIntervalMs: 1000,
  fall: 2,
  rise: 2,
  hashBalanceFactor: 150,
  bufferBytes: 65_536,
  maxConnections: 2000,
  clientTimeoutMs: 600_000,
  serverTimeoutMs: 600_000,
  stickMs: 24 * 3600_000,
  statsSocket: null,
};

/** The headers a replica names each created response and conversation in (src/openai/{responses,conversations}/route.ts). */
export const RESPONSE_ID_HEADER = "x-llamux-response-id";
export const CONVERSATION_ID_HEADER = "x-llamux-conversation-id";
/** The header HAProxy adds to every answer: which replica served it. */
export const REPLICA_HEADER = "x-llamux-replica";

/**
 * Every server's configured weight. The agent's percentage is applied to it
 * as weight × N / 100 in integers (HAProxy 2.6 server.c), so 100 makes 1 %
 * the smallest weight the agent can give rather than 0.
 */
export const SERVER_WEIGHT = 100;

const NAME = /^[A-Za-z0-9_.:-]+$/;

function ms(n: number): string {
  return n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`;
}

/** Refuses options that would make HAProxy refuse the file, or route by chance. */
export function checkHaproxyOptions(o: HaproxyOptions): void {
  const d = o.discovery ?? null;
  if (d !== null) {
    if (o.servers.length > 0) throw new RangeError("give either servers or DNS discovery, not both");
    if (!/^[A-Za-z0-9.-]+$/.test(d.fqdn)) throw new RangeError(`bad DNS name '${d.fqdn}'`);
    for (const [what, p] of [
      ["port", d.port],
      ["agent port", d.agentPort],
    ] as const) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RangeError(`discovery: bad ${what} ${p}`);
    }
    if (!Number.isInteger(d.slots) || d.slots < 1 || d.slots > 1000) throw new RangeError(`discovery: slots must be 1..1000, got ${d.slots}`);
  } else if (o.servers.length === 0) throw new RangeError("at least one server is needed");
  const names = new Set<string>();
  for (const s of o.servers) {
    if (!NAME.test(s.name)) throw new RangeError(`server name '${s.name}' may hold only letters, digits and - _ . :`);
    if (names.has(s.name)) throw new RangeError(`server name '${s.name}' is used twice`);
    names.add(s.name);
    if (!/^[A-Za-z0-9_.:[\]-]+$/.test(s.host)) throw new RangeError(`server '${s.name}': bad host '${s.host}'`);
    for (const [what, p] of [
      ["port", s.port],
      ["agent port", s.agentPort],
    ] as const) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RangeError(`server '${s.name}': bad ${what} ${p}`);
    }
  }
  if (!/^[^\s]*:\d+$/.test(o.bind)) throw new RangeError(`bind '${o.bind}' must be [address]:port`);
  if (o.hashBalanceFactor !== 0 && (!Number.isInteger(o.hashBalanceFactor) || o.hashBalanceFactor < 100)) {
    throw new RangeError(`hash balance factor must be 0 (off) or an integer ≥ 100, got ${o.hashBalanceFactor}`);
  }
  if (!Number.isInteger(o.bufferBytes) || o.bufferBytes < 16_384) throw new RangeError(`buffer must be at least 16384 bytes, got ${o.bufferBytes}`);
  for (const [what, v] of [
    ["check interval", o.checkIntervalMs],
    ["fall", o.fall],
    ["rise", o.rise],
    ["max connections", o.maxConnections],
    ["client timeout", o.clientTimeoutMs],
    ["server timeout", o.serverTimeoutMs],
    ["response stick time", o.stickMs],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${what} must be a positive integer, got ${v}`);
  }
  if (o.statsSocket !== null && /[\s"]/.test(o.statsSocket)) throw new RangeError(`stats socket path must not hold spaces or quotes`);
}

/** The configuration text. Pure: the same options give the same bytes. */
export function haproxyConfig(o: HaproxyOptions): string {
  checkHaproxyOptions(o);
  // weight 100: the agent's "N%" scales the configured weight with integer
  // arithmetic (weight × N / 100), so with HAProxy's default weight of 1 any
  // answer under 100 % is weight 0, and a replica with a single request
  // running took no new ones; with every replica busy the backend had no
  // weight left and HAProxy answered 503 "No server is available".
  const check = `weight ${SERVER_WEIGHT} check inter ${ms(o.checkIntervalMs)} fall ${o.fall} rise ${o.rise}`;
  const agent = `agent-check agent-inter ${ms(o.checkIntervalMs)}`;
  const d = o.discovery ?? null;
  const send = (stateOnly: boolean) => (stateOnly ? ` agent-send "${AGENT_STATE_ONLY}\\n"` : "");
  const serverLines = (stateOnly: boolean) => [
    "    # weight 100: the agent's N % sets the weight to 100 x N / 100 in integers;",
    "    # with the default weight 1, any answer under 100 % would be weight 0.",
    ...(d !== null
      ? [
          `    server-template r ${d.slots} ${d.fqdn}:${d.port} ${check} ${agent} agent-port ${d.agentPort}${send(stateOnly)} resolvers llamux_dns init-addr none`,
        ]
      : o.servers.map((s) => `    server ${s.name} ${s.host}:${s.port} ${check} ${agent} agent-port ${s.agentPort}${send(stateOnly)}`)),
  ];
  const learnIds = [
    `    stick store-response res.hdr(${RESPONSE_ID_HEADER}) table llamux_ids`,
    `    stick store-response res.hdr(${CONVERSATION_ID_HEADER}) table llamux_ids`,
  ];
  const common = [
    "    # A replica is in rotation while GET /ready answers 200 (the model serves, no drain).",
    "    # HTTP/1.1 with a Host: a replica listening on loopback answers only requests",
    "    # addressed to a loopback name (its DNS-rebinding guard).",
    "    option httpchk",
    "    http-check send meth GET uri /ready ver HTTP/1.1 hdr host localhost",
    "    http-check expect status 200",
    "    # A request that cannot reach its replica (dead, refused) or that a draining one",
    "    # refuses with 503 is sent to another; streams already running cannot be saved.",
    "    retry-on conn-failure empty-response 503",
    "    retries 2",
    "    option redispatch 1",
    "    # Learn which replica created each response and conversation, so later",
    "    # requests naming them go there.",
    ...learnIds,
    `    http-response set-header ${REPLICA_HEADER} %[srv_name]`,
  ];
  const lines = [
    "# HAProxy 2.6 in front of llamux replicas; generated by `llamux haproxy-config`.",
    "# What each part does and why: docs/cluster.md. Every replica runs with",
    "# --agent-port (the agent check below) and listens where its server line says.",
    "",
    "global",
    `    maxconn ${o.maxConnections}`,
    "    # Rules read the JSON body only as far as one buffer holds (this size less the",
    "    # headers and 1 KiB); the rest still reaches the replica unharmed. Each request",
    "    # still uploading holds one buffer, hence the maxconn bound. A key past the",
    "    # buffer is not seen: send the x-session-id header instead, always seen.",
    `    tune.bufsize ${o.bufferBytes}`,
    ...(o.statsSocket ? [`    stats socket ${o.statsSocket} mode 600 level admin`] : []),
    "",
    ...(d !== null
      ? [
          "# The replicas are the A records of the name in the server-template lines",
          "# (a headless Service in Kubernetes), looked up with the pod's own resolver.",
          "resolvers llamux_dns",
          "    parse-resolv-conf",
          "    hold valid 10s",
          "",
        ]
      : []),
    "defaults",
    "    mode http",
    "    timeout connect 2s",
    "    # Inactivity limits: above the longest silence of an answer (the first token of",
    "    # the largest prompt, or a whole non-streamed generation).",
    `    timeout client ${ms(o.clientTimeoutMs)}`,
    `    timeout server ${ms(o.serverTimeoutMs)}`,
    "    timeout http-request 60s",
    "    timeout queue 60s",
    "    timeout check 2s",
    "    # Server-sent events go out as they come, not in ~200 ms bursts.",
    "    option http-no-delay",
    "",
    "frontend llamux",
    `    bind ${o.bind}`,
    "    option http-buffer-request",
    "    # Ids a replica created and HAProxy learnt (the llamux_ids table below): the",
    "    # previous response of a Responses turn, or one being read back; a conversation.",
    "    http-request set-var(txn.prev,ifnotempty) req.body,json_query('$.previous_response_id')",
    "    http-request set-var(txn.prev) path,field(4,/) if { path_beg /v1/responses/ }",
    "    http-request set-var(txn.conv,ifnotempty) req.body,json_query('$.conversation')",
    "    http-request set-var(txn.conv,ifnotset,ifnotempty) req.body,json_query('$.conversation.id')",
    "    http-request set-var(txn.conv) path,field(4,/) if { path_beg /v1/conversations/ }",
    "    # The affinity key for consistent hashing, first found wins (ifnotempty: an",
    "    # empty value is no key):",
    "    #  1. the x-session-id header (any client can send it; always visible);",
    "    #  2. the conversation;",
    "    #  3. OpenAI's prompt_cache_key, which clients set for exactly this;",
    "    #  4. chat: the first message, and the second when the first is a system or",
    "    #     developer prompt: stable for a conversation's whole life, and equal",
    "    #     exactly when two conversations share a prefix worth reusing;",
    "    #  5. user / safety_identifier: one end user's conversations on one replica.",
    "    http-request set-var(txn.key,ifnotempty) req.hdr(x-session-id)",
    "    http-request set-var(txn.key,ifnotset) var(txn.conv) if { var(txn.conv) -m found }",
    "    http-request set-var(txn.key,ifnotset,ifnotempty) req.body,json_query('$.prompt_cache_key')",
    "    http-request set-var(txn.m0,ifnotempty) req.body,json_query('$.messages[0].content') if !{ var(txn.key) -m found }",
    "    http-request set-var(txn.r0) req.body,json_query('$.messages[0].role') if { var(txn.m0) -m found }",
    "    http-request set-var(txn.m1,ifnotempty) req.body,json_query('$.messages[1].content') if { var(txn.r0) -m str system developer }",
    "    http-request set-var(txn.key,ifnotset) var(txn.m0),concat(|,txn.m1,) if { var(txn.m0) -m found }",
    "    http-request set-var(txn.key,ifnotset,ifnotempty) req.body,json_query('$.user')",
    "    http-request set-var(txn.key,ifnotset,ifnotempty) req.body,json_query('$.safety_identifier')",
    "    # Hashed for the stick table: keys may be long (a whole first message).",
    "    http-request set-var(txn.keyhash) var(txn.key),xxh3 if { var(txn.key) -m found }",
    "    use_backend llamux_affinity if { var(txn.key) -m found } or { var(txn.prev) -m found }",
    "    default_backend llamux_balanced",
    "",
    "# Requests with a key or a previous response. A conversation's first request is",
    "# placed by consistent hashing with bounded load (a replica over the factor",
    "# times the average load passes new keys to the next on the ring; a replica",
    "# that leaves moves only its own keys), and the placement is remembered, so",
    "# later turns return to the replica holding the KV cache even when the loads",
    "# have shifted since. A remembered replica that is down is skipped; one that",
    "# drains answers 503, which is retried on another (retry-on, redispatch). The",
    "# agent here answers its state only (drain or ready at 100 %): a load weight",
    "# would move keys around the ring with every change.",
    "backend llamux_affinity",
    "    balance hash var(txn.key)",
    "    hash-type consistent",
    ...(o.hashBalanceFactor > 0 ? [`    hash-balance-factor ${o.hashBalanceFactor}`] : []),
    `    stick-table type string len 24 size 1m expire ${ms(o.stickMs)}`,
    "    stick match var(txn.prev) table llamux_ids",
    "    stick match var(txn.conv) table llamux_ids",
    "    stick on var(txn.keyhash)",
    ...common,
    ...serverLines(true),
    "",
    "# Everything else (a first turn, /v1/models, embeddings): the least loaded",
    "# replica, weighted by the agent's report of free slots and queue depth.",
    "backend llamux_balanced",
    "    balance leastconn",
    ...common,
    ...serverLines(false),
    "",
    "# Which replica created each response and conversation id (from the response",
    "# headers). With several HAProxy instances, or to survive a reload, replicate",
    "# it in a `peers` section (see docs/cluster.md); with a shared store",
    "# (--database-url) a lost entry costs only a recomputation of the KV cache.",
    "backend llamux_ids",
    `    stick-table type string len 64 size 1m expire ${ms(o.stickMs)}`,
    "",
  ];
  return lines.join("\n");
}
