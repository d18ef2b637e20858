// `llamux haproxy-config`: prints an HAProxy 2.6 configuration for the given
// replicas (src/cluster/haproxyConfig.ts), to adapt and deploy.
import { parseArgs } from "node:util";
import { HAPROXY_DEFAULTS, haproxyConfig, type HaproxyDiscovery, type HaproxyOptions, type HaproxyServer } from "./haproxyConfig.js";

const HELP = `Usage: llamux haproxy-config --server NAME=HOST:PORT/AGENT_PORT [--server ...] [options]
       llamux haproxy-config --dns NAME:PORT/AGENT_PORT [--dns-slots N] [options]

Prints an HAProxy 2.6 configuration for llamux replicas (each started with
--agent-port): conversation affinity, load-aware balancing, health checks and
failover. See docs/cluster.md.

Options:
  --server NAME=HOST:PORT/AGENT_PORT   a replica (repeat for each)
  --dns NAME:PORT/AGENT_PORT           or: the replicas are the A records of NAME (a Kubernetes
                                       headless Service), looked up with /etc/resolv.conf
  --dns-slots N                        the most replicas DNS may give [default: 16]
  --bind ADDRESS:PORT                  where HAProxy listens [default: ${HAPROXY_DEFAULTS.bind}]
  --check-interval-ms N                health and agent checks [default: ${HAPROXY_DEFAULTS.checkIntervalMs}]
  --fall N, --rise N                   failed / passed checks to take a replica out / in [default: ${HAPROXY_DEFAULTS.fall} / ${HAPROXY_DEFAULTS.rise}]
  --hash-balance-factor N              bounded load, percent of the average (0: off) [default: ${HAPROXY_DEFAULTS.hashBalanceFactor}]
  --buffer-bytes N                     tune.bufsize: how much of a body rules can read [default: ${HAPROXY_DEFAULTS.bufferBytes}]
  --max-connections N                  maxconn [default: ${HAPROXY_DEFAULTS.maxConnections}]
  --timeout-ms N                       client and server inactivity timeouts [default: ${HAPROXY_DEFAULTS.serverTimeoutMs}]
  --stats-socket PATH                  an admin socket for HAProxy's runtime API`;

/** "llamux-replicas.default.svc.cluster.local:8080/9090" → where DNS discovery looks. */
export function parseDnsSpec(spec: string, slots: number): HaproxyDiscovery {
  const m = /^([A-Za-z0-9.-]+):(\d+)\/(\d+)$/.exec(spec);
  if (!m) throw new RangeError(`--dns '${spec}': expected NAME:PORT/AGENT_PORT, e.g. llamux-replicas.default.svc.cluster.local:8080/9090`);
  return { fqdn: m[1]!, port: Number(m[2]), agentPort: Number(m[3]), slots };
}

/** "r1=10.0.0.5:8080/9090" → a server; "[::1]:8080/9090" hosts keep their brackets. */
export function parseServerSpec(spec: string): HaproxyServer {
  const m = /^([^=]+)=(\[[^\]]+\]|[^:/[\]]+):(\d+)\/(\d+)$/.exec(spec);
  if (!m) throw new RangeError(`--server '${spec}': expected NAME=HOST:PORT/AGENT_PORT, e.g. r1=10.0.0.5:8080/9090`);
  return { name: m[1]!, host: m[2]!, port: Number(m[3]), agentPort: Number(m[4]) };
}

export function parseHaproxyConfigArgs(argv: string[]): HaproxyOptions | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      server: { type: "string", multiple: true },
      dns: { type: "string" },
      "dns-slots": { type: "string" },
      bind: { type: "string" },
      "check-interval-ms": { type: "string" },
      fall: { type: "string" },
      rise: { type: "string" },
      "hash-balance-factor": { type: "string" },
      "buffer-bytes": { type: "string" },
      "max-connections": { type: "string" },
      "timeout-ms": { type: "string" },
      "stats-socket": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return null;
  const int = (name: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new RangeError(`--${name}: expected a whole number, got '${v}'`);
    return n;
  };
  const d = HAPROXY_DEFAULTS;
  const timeout = int("timeout-ms", values["timeout-ms"], d.serverTimeoutMs);
  return {
    ...d,
    bind: values.bind ?? d.bind,
    servers: (values.server ?? []).map(parseServerSpec),
    discovery: values.dns === undefined ? null : parseDnsSpec(values.dns, int("dns-slots", values["dns-slots"], 16)),
    checkIntervalMs: int("check-interval-ms", values["check-interval-ms"], d.checkIntervalMs),
    fall: int("fall", values.fall, d.fall),
    rise: int("rise", values.rise, d.rise),
    hashBalanceFactor: int("hash-balance-factor", values["hash-balance-factor"], d.hashBalanceFactor),
    bufferBytes: int("buffer-bytes", values["buffer-bytes"], d.bufferBytes),
    maxConnections: int("max-connections", values["max-connections"], d.maxConnections),
    clientTimeoutMs: timeout,
    serverTimeoutMs: timeout,
    statsSocket: values["stats-socket"] ?? null,
  };
}

export function haproxyConfigMain(argv: string[]): number {
  let options: HaproxyOptions | null;
  let text: string;
  try {
    options = parseHaproxyConfigArgs(argv);
    if (options === null) {
      console.log(HELP);
      return 0;
    }
    text = haproxyConfig(options);
  } catch (err) {
    console.error(`llamux haproxy-config: ${(err as Error).message}`);
    return 2;
  }
  process.stdout.write(text);
  return 0;
}
