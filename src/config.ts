// `llamux serve` configuration. Every option is declared once below with its
// flag, environment variable, default and help; precedence is
// command line > environment (LLAMUX_*) > config file (--config) > default.
import fs from "node:fs";
import { parseArgs } from "node:util";
import YAML from "yaml";
import { z } from "zod";
import { DEFAULT_FOLLOW_UP_MS } from "../engine/index.js";
import { defaultThreads } from "../models/threads.js";
import { REDIS_FALLBACKS } from "./quota/redis/fallback.js";
import { MIN_SECRET_LENGTH, secretWeakness } from "./tenants/keys.js";
import type { ModelPrice } from "./usage/usageLog.js";

const gpuModes = ["auto", "off", "cuda", "vulkan"] as const;
const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
// z.coerce.number() reads "" and null as 0, which would make `--port ""` or an
// empty LLAMUX_PORT silently mean "any free port": blanks are refused instead.
const number = () => z.preprocess((v) => (v === "" || v === null || (typeof v === "string" && v.trim() === "") ? Number.NaN : v), z.coerce.number());
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => number().pipe(z.number().int().min(min).max(max));
// Flags and environment variables are strings: "true"/"false" (and 1/0) are
// read as booleans; a config file may give a real boolean.
const boolean = () =>
  z.preprocess(
    (v) => (typeof v === "string" ? (({ true: true, "1": true, false: false, "0": false } as Record<string, boolean>)[v.trim().toLowerCase()] ?? v) : v),
    z.boolean({ message: "expected true or false" }),
  );

// A model's price, USD per million tokens: an object, or its JSON text (a flag
// or an environment variable). Cached input defaults to the input price.
const price = () =>
  z.preprocess(
    (v) => {
      if (typeof v !== "string") return v;
      try {
        return JSON.parse(v);
      } catch {
        return v;
      }
    },
    z
      .object(
        {
          input: z.number().finite().min(0),
          cached_input: z.number().finite().min(0).optional(),
          cachedInput: z.number().finite().min(0).optional(),
          output: z.number().finite().min(0),
        },
        { message: 'expected {"input": USD, "cached_input": USD, "output": USD} per million tokens' },
      )
      .strict()
      .transform((p): ModelPrice => ({ input: p.input, cachedInput: p.cached_input ?? p.cachedInput ?? p.input, output: p.output })),
  );

/** --max-queued when not given: requests that may wait per KV slot. */
export const QUEUED_PER_SLOT = 8;

const OPTIONS = {
  model: {
    singleModel: true,
    env: "LLAMUX_MODEL",
    schema: z.string().min(1).nullable(),
    default: null,
    help: "GGUF file, directory of GGUFs, or hf:user/repo[:quant]. Default: first .gguf in ./models, else a synthetic smoke-test model",
  },
  host: { env: "LLAMUX_HOST", schema: z.string().min(1), default: "127.0.0.1", help: "Address to listen on" },
  port: { env: "LLAMUX_PORT", schema: int(0, 65535), default: 8080, help: "Port to listen on (0 picks a free one)" },
  "agent-port": {
    env: "LLAMUX_AGENT_PORT",
    schema: z.null().or(int(0, 65535)),
    default: null,
    help: "Also answer HAProxy agent checks on this TCP port of --host: a weight from free slots and queue depth, or drain while loading or shutting down (0 picks a free one; unset: off). See docs/cluster.md",
  },
  slots: { perModel: true, env: "LLAMUX_SLOTS", schema: int(1, 256), default: 4, help: "Concurrent sequences (KV-cache slots) in the context" },
  "ctx-per-slot": { perModel: true, env: "LLAMUX_CTX_PER_SLOT", schema: int(16), default: 2048, help: "Context length of each slot, in tokens" },
  threads: {
    perModel: true,
    env: "LLAMUX_THREADS",
    schema: int(1, 1024),
    default: defaultThreads(),
    help: "llama.cpp compute threads (default: physical cores)",
  },
  gpu: { perModel: true, env: "LLAMUX_GPU", schema: z.enum(gpuModes), default: "auto", help: "GPU backend: auto | off | cuda | vulkan" },
  alias: { singleModel: true, env: "LLAMUX_ALIAS", schema: z.string().min(1).nullable(), default: null, help: "Extra model name clients may use" },
  "chat-template": {
    perModel: true,
    singleModel: true,
    env: "LLAMUX_CHAT_TEMPLATE",
    schema: z.string().min(1).nullable(),
    default: null,
    help: "Jinja chat template file overriding the model's",
  },
  "step-tokens": {
    perModel: true,
    env: "LLAMUX_STEP_TOKENS",
    schema: int(1, 8192),
    default: 512,
    help: "Max tokens per engine step (decode + prefill chunks)",
  },
  "coalesce-ms": {
    perModel: true,
    env: "LLAMUX_COALESCE_MS",
    schema: int(0, 1000),
    default: 3,
    help: "When idle, wait this long for more arrivals so a burst is prefilled in one batch",
  },
  "follow-up-ms": {
    perModel: true,
    env: "LLAMUX_FOLLOW_UP_MS",
    schema: int(0, 1000),
    default: DEFAULT_FOLLOW_UP_MS,
    help: "After a tenant's last request ends, the next engine step waits up to this long for its next one (woken by any arrival), so a client in a loop is not made to wait a whole step (0: never)",
  },
  "models-dir": { env: "LLAMUX_MODELS_DIR", schema: z.string().min(1), default: "./models", help: "Where to look for a model when --model is not given" },
  "cache-dir": { env: "LLAMUX_CACHE_DIR", schema: z.string().min(1), default: "./.llamux/cache", help: "Where hf: downloads are kept" },
  "max-body-bytes": { env: "LLAMUX_MAX_BODY_BYTES", schema: int(1), default: 4 * 1024 * 1024, help: "Request body limit (413 beyond it)" },
  "log-level": { env: "LLAMUX_LOG_LEVEL", schema: z.enum(logLevels), default: "info", help: "Log level" },
  "log-content": {
    env: "LLAMUX_LOG_CONTENT",
    schema: boolean(),
    default: false,
    help: "Also log each request's messages/prompt (debug level); off: prompts never reach the logs",
  },
  "drain-timeout-ms": {
    env: "LLAMUX_DRAIN_TIMEOUT_MS",
    schema: int(0, 3_600_000),
    default: 30_000,
    help: "On shutdown, let in-flight requests finish for up to this long, then cut them (0: cut at once)",
  },
  // null: QUEUED_PER_SLOT × --slots, filled in by parseServeConfig.
  "max-queued": {
    perModel: true,
    env: "LLAMUX_MAX_QUEUED",
    schema: z.null().or(int(0, 1_000_000)),
    default: null,
    help: `Requests that may wait for a KV slot, over all tenants, while every slot is busy; more get 429 queue_full (0: refuse when no slot is free) [default: ${QUEUED_PER_SLOT} x --slots]`,
  },
  "queue-timeout-ms": {
    env: "LLAMUX_QUEUE_TIMEOUT_MS",
    schema: int(0, 3_600_000),
    default: 60_000,
    help: "A request with no output this long after it arrived is cancelled and answered 503 queue_timeout (0: wait forever)",
  },
  "headers-timeout-ms": {
    env: "LLAMUX_HEADERS_TIMEOUT_MS",
    schema: int(1, 3_600_000),
    default: 10_000,
    help: "Close a connection (408) whose request head has not fully arrived this long after it began, or that sends nothing",
  },
  "request-timeout-ms": {
    env: "LLAMUX_REQUEST_TIMEOUT_MS",
    schema: int(1, 3_600_000),
    default: 60_000,
    help: "Close a connection (408) whose request, head and body, has not fully arrived in this long; responses and streams are not limited",
  },
  "keep-alive-timeout-ms": {
    env: "LLAMUX_KEEP_ALIVE_TIMEOUT_MS",
    schema: int(1, 3_600_000),
    default: 5_000,
    help: "Close a keep-alive connection idle this long between requests (keep it above a load balancer's idle timeout)",
  },
  tenants: {
    env: "LLAMUX_TENANTS",
    schema: z.string().min(1).nullable(),
    default: null,
    help: "Tenants file (JSON or YAML): turns on API-key auth (so does LLAMUX_ADMIN_KEY)",
  },
  "data-dir": {
    env: "LLAMUX_DATA_DIR",
    schema: z.string().min(1),
    default: "./data",
    help: "Where llamux.db is kept: stored responses and conversations, and in multi-tenant mode tenants, keys and usage",
  },
  "response-ttl-days": {
    env: "LLAMUX_RESPONSE_TTL_DAYS",
    schema: int(0, 36_500),
    default: 30,
    help: "Stored responses (/v1/responses) older than this are invisible and purged (0: keep forever); conversations are kept until deleted",
  },
  "database-url": {
    env: "LLAMUX_DATABASE_URL",
    schema: z
      .string()
      .regex(/^postgres(ql)?:\/\/./, "expected a postgres:// or postgresql:// URL")
      .nullable(),
    default: null,
    help: "Keep tenants, keys, usage, stored responses and conversations in this PostgreSQL database, shared by every replica, instead of <data-dir>/llamux.db (prefer the variable: a flag shows in ps)",
  },
  "database-pool-size": { env: "LLAMUX_DATABASE_POOL_SIZE", schema: int(1, 1000), default: 10, help: "Most PostgreSQL connections this replica holds at once" },
  "kv-cache-dir": {
    env: "LLAMUX_KV_CACHE_DIR",
    schema: z.string().min(1).nullable(),
    default: null,
    help: "Where evicted slots' KV states are saved and restored from (default: <data-dir>/kv-cache)",
  },
  "kv-cache-max-bytes": {
    perModel: true,
    env: "LLAMUX_KV_CACHE_MAX_BYTES",
    schema: int(0),
    default: 2 * 1024 ** 3,
    help: "Disk bound of the saved KV states, least recently used out first (0: never save)",
  },
  "redis-url": {
    env: "LLAMUX_REDIS_URL",
    schema: z
      .string()
      .regex(/^rediss?:\/\/./, "expected a redis:// or rediss:// URL")
      .nullable(),
    default: null,
    help: "Redis shared by every replica: per-tenant rate limits, concurrency and queue caps become exact across replicas (default: in-process, per replica)",
  },
  "redis-fallback": {
    env: "LLAMUX_REDIS_FALLBACK",
    schema: z.enum(REDIS_FALLBACKS),
    default: "local",
    help: "While Redis is unreachable: local (each limit ÷ the number of replicas, enforced by each replica alone) | refuse (503 quota_unavailable)",
  },
  "redis-replicas": {
    env: "LLAMUX_REDIS_REPLICAS",
    schema: z.null().or(int(1, 10_000)),
    default: null,
    help: "Replicas sharing the limits, for --redis-fallback local (default: the live replicas last counted in Redis)",
  },
  "redis-lease-ms": {
    env: "LLAMUX_REDIS_LEASE_MS",
    schema: int(1000, 3_600_000),
    default: 30_000,
    help: "A request's place in its tenant's concurrency and queue caps outlives its replica (killed, cut off) by at most this long",
  },
  "redis-timeout-ms": {
    env: "LLAMUX_REDIS_TIMEOUT_MS",
    schema: int(10, 60_000),
    default: 500,
    help: "Redis connect and command timeout: past it, the request is decided by --redis-fallback",
  },
  "redis-key-prefix": {
    env: "LLAMUX_REDIS_KEY_PREFIX",
    schema: z.string().min(1).max(200),
    default: "llamux:quota:",
    help: "Prefix of every Redis key (deployments sharing one Redis need different ones)",
  },
  "max-file-bytes": {
    env: "LLAMUX_MAX_FILE_BYTES",
    schema: int(1),
    default: 200 * 1024 * 1024,
    help: "Largest file accepted by POST /v1/files (413 beyond it; OpenAI's batch input bound is 200 MB)",
  },
  "batch-concurrency": {
    env: "LLAMUX_BATCH_CONCURRENCY",
    schema: z.null().or(int(1, 4096)),
    default: null,
    help: "Batch API lines in flight at once over all batches [default: the served models' slots, added up]",
  },
  price: {
    perModel: true,
    env: "LLAMUX_PRICE",
    schema: price().nullable(),
    default: null,
    help: 'The model\'s price for the cost reports, USD per million tokens: {"input": 0.15, "cached_input": 0.075, "output": 0.6} (cached_input defaults to input; unset: costs 0). See docs/usage.md',
  },
  "batch-max-slots": {
    env: "LLAMUX_BATCH_MAX_SLOTS",
    schema: z.null().or(int(1, 4096)),
    default: null,
    help: "Most slots of a model batch requests hold at once [default: every slot; they still run only on slots interactive requests leave free, and are preempted for them]",
  },
  "audit-refusals-per-address": {
    env: "LLAMUX_AUDIT_REFUSALS_PER_ADDRESS",
    schema: int(0, 1_000_000),
    default: 10,
    help: "Refused authentications from one source address recorded one by one in the audit log per window; the rest are counted in the window's summary record",
  },
  "audit-refusals-total": {
    env: "LLAMUX_AUDIT_REFUSALS_TOTAL",
    schema: int(0, 1_000_000),
    default: 100,
    help: "Refused authentications recorded one by one per window over all addresses (with the summary, at most this + 1 records per window)",
  },
  "audit-refusal-window-ms": {
    env: "LLAMUX_AUDIT_REFUSAL_WINDOW_MS",
    schema: int(1000, 86_400_000),
    default: 60_000,
    help: "The audit log's window for refused authentications: its limits start over and its summary is written when it ends",
  },
} as const;

/** Shortest LLAMUX_ADMIN_KEY accepted: a guessable admin key would hand out every tenant. */
export const MIN_ADMIN_KEY_LENGTH = MIN_SECRET_LENGTH;

type OptionName = keyof typeof OPTIONS;

// Each option is declared once, in OPTIONS; the types below follow from it.
// `perModel`: a `models` entry of the config file may set it for its own model
// (the top-level value is its default). `singleModel`: it describes one model,
// so it cannot be combined with a `models` list.
type PerModelName = { [N in OptionName]: (typeof OPTIONS)[N] extends { perModel: true } ? N : never }[OptionName];
const isPerModel = (n: OptionName): n is PerModelName => "perModel" in OPTIONS[n];
const PER_MODEL_OPTIONS = (Object.keys(OPTIONS) as OptionName[]).filter(isPerModel);
const SINGLE_MODEL_OPTIONS = (Object.keys(OPTIONS) as OptionName[]).filter((n) => "singleModel" in OPTIONS[n]);

/** "ctx-per-slot" → "ctxPerSlot", in types as at run time (camel()). */
type Camel<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;
type OptionValue<N extends OptionName> = z.output<(typeof OPTIONS)[N]["schema"]>;
type Values<Names extends OptionName> = { -readonly [N in Names as Camel<N>]: OptionValue<N> };

/** Filled in after parsing: the queue bound is QUEUED_PER_SLOT × slots when not given. */
interface Resolved {
  /** Requests that may wait for a slot while every slot is busy, over all tenants; 0: none. */
  maxQueued: number;
}

/** One served model: its file and names, and every per-model option of its worker. */
export type ModelConfig = Omit<Values<PerModelName>, keyof Resolved> &
  Resolved & {
    /** GGUF file, directory or hf: URI; null: the default model (single-model mode only). */
    model: string | null;
    /** The id clients use; null: derived from the file name. */
    id: string | null;
    aliases: string[];
  };

/** Every option of OPTIONS under its camelCase name, and the models to serve. */
export type ServeConfig = Omit<Values<OptionName>, keyof Resolved> &
  Resolved & {
    /**
     * The models to serve, each in its own engine worker: the config file's
     * `models` list, or one model built from the top-level options.
     */
    models: ModelConfig[];
  };

/**
 * Settings that are read from the environment only, never from a flag (which
 * `ps` would show) or the config file, and are kept out of ServeConfig so
 * they are never logged with it.
 */
export interface ServeSecrets {
  /** LLAMUX_ADMIN_KEY: enables and guards /admin; null when unset. */
  adminKey: string | null;
  /** LLAMUX_METRICS_TOKEN: required on /metrics when set (as is it, or the admin key, in multi-tenant mode); null when unset. */
  metricsToken: string | null;
}

/**
 * A secret from the environment, refused at start when it is guessable (see
 * secretWeakness): one line naming the variable and why.
 */
function readSecret(env: NodeJS.ProcessEnv, name: string, unsetMeans: string): string | null {
  const value = env[name];
  if (value === undefined) return null;
  const why = secretWeakness(value);
  if (why !== null) {
    throw new ConfigError(
      `${name} must be at least ${MIN_SECRET_LENGTH} characters of random text without surrounding spaces (for example: openssl rand -hex 32); refused because ${why} (unset it ${unsetMeans})`,
    );
  }
  return value;
}

export function readServeSecrets(env: NodeJS.ProcessEnv = process.env): ServeSecrets {
  return {
    adminKey: readSecret(env, "LLAMUX_ADMIN_KEY", "to disable the admin API"),
    metricsToken: readSecret(env, "LLAMUX_METRICS_TOKEN", "to leave /metrics to the admin key, or open in single-user mode"),
  };
}

export class ConfigError extends Error {}

export function serveHelp(): string {
  const lines = ["Usage: llamux serve [options]", "", "Options (each also settable by its environment variable or a --config file):"];
  for (const [name, o] of Object.entries(OPTIONS)) {
    const def = o.default === null ? "" : ` [default: ${o.default}]`;
    lines.push(`  --${name.padEnd(21)} ${o.env.padEnd(28)} ${o.help}${def}`);
  }
  lines.push(`  --${"config".padEnd(21)} ${"LLAMUX_CONFIG".padEnd(28)} JSON or YAML file with any of the options above, and optionally`);
  lines.push(`    ${"".padEnd(21)} ${"".padEnd(28)} 'models': a list of models to serve at once, each {model, id, alias, ${PER_MODEL_OPTIONS.join(", ")}}`);
  lines.push(
    `    ${"(env only)".padEnd(21)} ${"LLAMUX_ADMIN_KEY".padEnd(28)} Enables the /admin API, guarded by this key (at least ${MIN_ADMIN_KEY_LENGTH} random characters); turns on API-key auth`,
  );
  lines.push(
    `    ${"(env only)".padEnd(21)} ${"LLAMUX_METRICS_TOKEN".padEnd(28)} Bearer token /metrics requires (at least ${MIN_SECRET_LENGTH} random characters); with tenants, /metrics takes it or the admin key`,
  );
  lines.push(`  --${"help".padEnd(21)} ${"".padEnd(28)} Show this help`);
  return lines.join("\n");
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function readConfigFile(file: string): { options: Record<string, unknown>; models: unknown } {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = /\.json$/i.test(file) ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid ${/\.json$/i.test(file) ? "JSON" : "YAML"}: ${(err as Error).message.split("\n")[0]}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file} must hold an object of options`);
  }
  const out: Record<string, unknown> = {};
  let models: unknown;
  for (const [key, value] of Object.entries(parsed)) {
    if (key === "models") {
      models = value;
      continue;
    }
    const name = (Object.keys(OPTIONS) as OptionName[]).find((n) => n === key || camel(n) === key);
    if (!name) throw new ConfigError(`unknown option '${key}' in config file ${file}`);
    out[name] = value;
  }
  return { options: out, models };
}

/**
 * The config file's `models` list → one ModelConfig each, every option it
 * leaves out taken from `defaults` (the top-level options). Names must be unique.
 */
function parseModelList(raw: unknown, defaults: ServeConfig, maxQueuedGiven: number | null, file: string): ModelConfig[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError(`config file ${file}: 'models' must be a non-empty list of models`);
  const names = new Set<string>();
  return raw.map((entry, i) => {
    const where = `config file ${file}: models[${i}]`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw new ConfigError(`${where} must be an object with at least 'model'`);
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
      const name = ["model", "id", "alias", ...PER_MODEL_OPTIONS].find((n) => n === key || camel(n) === key);
      if (!name) throw new ConfigError(`${where}: unknown option '${key}' (a model may set model, id, alias, ${PER_MODEL_OPTIONS.join(", ")})`);
      fields[name] = value;
    }
    const text = z.string().min(1);
    const model = text.safeParse(fields.model);
    if (!model.success) throw new ConfigError(`${where}: 'model' (a GGUF file, directory or hf: URI) is required`);
    const id = text.nullable().safeParse(fields.id ?? null);
    if (!id.success) throw new ConfigError(`${where}: 'id' must be a non-empty string`);
    const alias = z
      .union([text, z.array(text)])
      .nullable()
      .safeParse(fields.alias ?? null);
    if (!alias.success) throw new ConfigError(`${where}: 'alias' must be a name or a list of names`);
    const aliases = alias.data === null ? [] : typeof alias.data === "string" ? [alias.data] : alias.data;
    const perModel: Record<string, unknown> = {};
    for (const name of PER_MODEL_OPTIONS) {
      // A single-model option (the chat template) is not inherited from the top level.
      const fallback = name === "max-queued" ? maxQueuedGiven : SINGLE_MODEL_OPTIONS.includes(name) ? null : defaults[camel(name) as keyof ServeConfig];
      if (fields[name] === undefined) {
        perModel[camel(name)] = fallback;
        continue;
      }
      const parsed = (OPTIONS[name].schema as z.ZodType).safeParse(fields[name]);
      if (!parsed.success) throw new ConfigError(`${where}: invalid value for '${name}': ${JSON.stringify(fields[name])} (${parsed.error.issues[0]?.message})`);
      perModel[camel(name)] = parsed.data;
    }
    const config = withResolvedQueue({ ...(perModel as Values<PerModelName>), model: model.data, id: id.data, aliases });
    // Ids derived from file names are checked once the files are resolved.
    for (const name of [...(config.id ? [config.id] : []), ...aliases]) {
      if (names.has(name)) throw new ConfigError(`${where}: the name '${name}' is already used by another model`);
      names.add(name);
    }
    return config;
  });
}

/** Fills in the queue bound a model (or the top level) left unset: QUEUED_PER_SLOT per slot. */
function withResolvedQueue<T extends { slots: number; maxQueued: number | null }>(o: T): Omit<T, "maxQueued"> & Resolved {
  return { ...o, maxQueued: o.maxQueued ?? QUEUED_PER_SLOT * o.slots };
}

/**
 * A boolean option given bare (`--log-content` last, or followed by another
 * flag) means true; `--log-content false` and `--log-content=false` still work.
 */
function withBareSwitches(argv: string[]): string[] {
  const switches = new Set(
    Object.entries(OPTIONS)
      .filter(([, o]) => typeof o.default === "boolean")
      .map(([n]) => `--${n}`),
  );
  return argv.map((a, i) => (switches.has(a) && (i + 1 === argv.length || argv[i + 1]!.startsWith("--")) ? `${a}=true` : a));
}

/** Parses `serve` arguments; returns null when --help was asked for. */
export function parseServeConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ServeConfig | null {
  const flagSpec = Object.fromEntries([...Object.keys(OPTIONS), "config"].map((n) => [n, { type: "string" as const }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: withBareSwitches(argv),
      options: { ...flagSpec, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see llamux serve --help)`);
  }
  if (values.help) return null;
  const configFile = (values.config as string | undefined) ?? env.LLAMUX_CONFIG;
  const file = configFile ? readConfigFile(configFile) : { options: {}, models: undefined };
  const fromFile = file.options;

  const out: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(OPTIONS) as Array<[OptionName, (typeof OPTIONS)[OptionName]]>) {
    const [raw, source] =
      values[name] !== undefined
        ? [values[name], `--${name}`]
        : env[o.env] !== undefined
          ? [env[o.env], o.env]
          : fromFile[name] !== undefined
            ? [fromFile[name], `config ${name}`]
            : [o.default, "default"];
    const parsed = (o.schema as z.ZodType).safeParse(raw);
    if (!parsed.success) {
      throw new ConfigError(`invalid value for ${source}: ${JSON.stringify(raw)} (${parsed.error.issues[0]?.message})`);
    }
    out[camel(name)] = parsed.data;
  }
  // `out` has exactly OPTIONS' names, each parsed by its own schema: Values<OptionName> by construction.
  const parsedOptions = out as Values<OptionName>;
  const maxQueuedGiven = parsedOptions.maxQueued;
  const config: ServeConfig = { ...withResolvedQueue(parsedOptions), models: [] };
  if (file.models !== undefined) {
    const given = SINGLE_MODEL_OPTIONS.filter((name) => values[name] !== undefined || env[OPTIONS[name].env] !== undefined || fromFile[name] !== undefined);
    if (given.length > 0) {
      throw new ConfigError(`${given.map((n) => `--${n}`).join(", ")} cannot be combined with the config file's 'models' list: set them per model there`);
    }
    config.models = parseModelList(file.models, config, maxQueuedGiven, configFile!);
  } else {
    const perModel = Object.fromEntries(PER_MODEL_OPTIONS.map((n) => [camel(n), config[camel(n) as keyof ServeConfig]])) as Values<PerModelName>;
    config.models = [withResolvedQueue({ ...perModel, model: config.model, id: null, aliases: config.alias ? [config.alias] : [] })];
  }
  // Node refuses a head deadline past the whole request's.
  if (config.headersTimeoutMs > config.requestTimeoutMs) {
    throw new ConfigError(`--headers-timeout-ms (${config.headersTimeoutMs}) must not exceed --request-timeout-ms (${config.requestTimeoutMs})`);
  }
  return config;
}
