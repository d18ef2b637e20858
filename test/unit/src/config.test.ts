// `llamux serve` configuration (src/config.ts): defaults, precedence
// CLI > env (LLAMUX_*) > config file > default, and errors that name their source.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { defaultThreads } from "../../../models/threads.js";
import { ConfigError, parseServeConfig, serveHelp, type ServeConfig } from "../../../src/config.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-config-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
function writeFile(ext: string, text: string): string {
  const file = path.join(dir, `cfg${fileCounter++}.${ext}`);
  fs.writeFileSync(file, text);
  return file;
}

function parse(argv: string[], env: Record<string, string> = {}): ServeConfig {
  const cfg = parseServeConfig(argv, env);
  assert.ok(cfg, "expected a config, got null (help)");
  return cfg;
}

/** Asserts that parsing fails with a ConfigError whose message matches every pattern. */
function assertConfigError(argv: string[], env: Record<string, string>, ...patterns: RegExp[]): void {
  assert.throws(
    () => parseServeConfig(argv, env),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      for (const p of patterns) assert.match(err.message, p);
      return true;
    },
  );
}

function pick(cfg: ServeConfig, keys: readonly (keyof ServeConfig)[]): Partial<ServeConfig> {
  return Object.fromEntries(keys.map((k) => [k, cfg[k]]));
}

const DEFAULTS: Partial<ServeConfig> = {
  model: null,
  host: "127.0.0.1",
  port: 8080,
  agentPort: null,
  slots: 4,
  ctxPerSlot: 2048,
  gpu: "auto",
  alias: null,
  chatTemplate: null,
  stepTokens: 512,
  modelsDir: "./models",
  cacheDir: "./.llamux/cache",
  maxBodyBytes: 4 * 1024 * 1024,
  logLevel: "info",
  logContent: false,
  drainTimeoutMs: 30_000,
  maxQueued: 32, // 8 x the default 4 slots
  queueTimeoutMs: 60_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  databaseUrl: null,
  databasePoolSize: 10,
  redisUrl: null,
  redisFallback: "local",
  redisReplicas: null,
  redisLeaseMs: 30_000,
  redisTimeoutMs: 500,
  redisKeyPrefix: "llamux:quota:",
};

// Every option (kebab name), its env var, a valid non-default value as given on the
// command line, and the parsed value.
const TABLE: Array<[string, string, string, unknown, keyof ServeConfig]> = [
  ["model", "LLAMUX_MODEL", "/m/x.gguf", "/m/x.gguf", "model"],
  ["host", "LLAMUX_HOST", "0.0.0.0", "0.0.0.0", "host"],
  ["port", "LLAMUX_PORT", "9001", 9001, "port"],
  ["agent-port", "LLAMUX_AGENT_PORT", "9090", 9090, "agentPort"],
  ["slots", "LLAMUX_SLOTS", "8", 8, "slots"],
  ["ctx-per-slot", "LLAMUX_CTX_PER_SLOT", "4096", 4096, "ctxPerSlot"],
  ["threads", "LLAMUX_THREADS", "3", 3, "threads"],
  ["gpu", "LLAMUX_GPU", "off", "off", "gpu"],
  ["alias", "LLAMUX_ALIAS", "gpt-x", "gpt-x", "alias"],
  ["chat-template", "LLAMUX_CHAT_TEMPLATE", "/t.jinja", "/t.jinja", "chatTemplate"],
  ["step-tokens", "LLAMUX_STEP_TOKENS", "256", 256, "stepTokens"],
  ["follow-up-ms", "LLAMUX_FOLLOW_UP_MS", "0", 0, "followUpMs"],
  ["models-dir", "LLAMUX_MODELS_DIR", "/models", "/models", "modelsDir"],
  ["cache-dir", "LLAMUX_CACHE_DIR", "/cache", "/cache", "cacheDir"],
  ["max-body-bytes", "LLAMUX_MAX_BODY_BYTES", "1024", 1024, "maxBodyBytes"],
  ["log-level", "LLAMUX_LOG_LEVEL", "debug", "debug", "logLevel"],
  ["log-content", "LLAMUX_LOG_CONTENT", "true", true, "logContent"],
  ["drain-timeout-ms", "LLAMUX_DRAIN_TIMEOUT_MS", "0", 0, "drainTimeoutMs"],
  ["max-queued", "LLAMUX_MAX_QUEUED", "0", 0, "maxQueued"],
  ["queue-timeout-ms", "LLAMUX_QUEUE_TIMEOUT_MS", "1500", 1500, "queueTimeoutMs"],
  ["headers-timeout-ms", "LLAMUX_HEADERS_TIMEOUT_MS", "2000", 2000, "headersTimeoutMs"],
  ["request-timeout-ms", "LLAMUX_REQUEST_TIMEOUT_MS", "3000", 3000, "requestTimeoutMs"],
  ["keep-alive-timeout-ms", "LLAMUX_KEEP_ALIVE_TIMEOUT_MS", "65000", 65000, "keepAliveTimeoutMs"],
  ["database-url", "LLAMUX_DATABASE_URL", "postgres://llamux:pw@db:5432/llamux", "postgres://llamux:pw@db:5432/llamux", "databaseUrl"],
  ["database-pool-size", "LLAMUX_DATABASE_POOL_SIZE", "25", 25, "databasePoolSize"],
  ["redis-url", "LLAMUX_REDIS_URL", "redis://:pw@10.0.0.5:6380/2", "redis://:pw@10.0.0.5:6380/2", "redisUrl"],
  ["redis-fallback", "LLAMUX_REDIS_FALLBACK", "refuse", "refuse", "redisFallback"],
  ["redis-replicas", "LLAMUX_REDIS_REPLICAS", "3", 3, "redisReplicas"],
  ["redis-lease-ms", "LLAMUX_REDIS_LEASE_MS", "5000", 5000, "redisLeaseMs"],
  ["redis-timeout-ms", "LLAMUX_REDIS_TIMEOUT_MS", "250", 250, "redisTimeoutMs"],
  ["redis-key-prefix", "LLAMUX_REDIS_KEY_PREFIX", "prod:", "prod:", "redisKeyPrefix"],
];
const TABLE_KEYS = TABLE.map((r) => r[4]);
const EXPECTED_FROM_TABLE = Object.fromEntries(TABLE.map((r) => [r[4], r[3]]));
const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

describe("parseServeConfig defaults", () => {
  test("with no flags, env or file every option has its documented default", () => {
    const cfg = parse([]);
    assert.deepEqual(pick(cfg, Object.keys(DEFAULTS) as (keyof ServeConfig)[]), DEFAULTS);
    assert.equal(cfg.threads, defaultThreads());
    assert.ok(Number.isInteger(cfg.threads) && cfg.threads >= 1);
  });

  test("unrelated environment variables are ignored", () => {
    const cfg = parse([], { PORT: "1", HOST: "x", LLAMUX: "y", llamux_port: "2" });
    assert.equal(cfg.port, 8080);
    assert.equal(cfg.host, "127.0.0.1");
  });

  test("the env argument is used instead of process.env", () => {
    const saved = process.env.LLAMUX_SLOTS;
    process.env.LLAMUX_SLOTS = "9";
    try {
      assert.equal(parse([], {}).slots, 4);
    } finally {
      if (saved === undefined) delete process.env.LLAMUX_SLOTS;
      else process.env.LLAMUX_SLOTS = saved;
    }
  });
});

describe("parseServeConfig sources", () => {
  test("every option can be set on the command line, with numbers parsed", () => {
    const argv = TABLE.flatMap(([name, , raw]) => [`--${name}`, raw]);
    assert.deepEqual(pick(parse(argv), TABLE_KEYS), EXPECTED_FROM_TABLE);
  });

  test("--name=value syntax works too", () => {
    assert.deepEqual(pick(parse(["--port=9002", "--log-level=warn"]), ["port", "logLevel"]), { port: 9002, logLevel: "warn" });
  });

  test("a boolean option may be given bare, or as true/false/1/0 from flags and env", () => {
    assert.equal(parse(["--log-content"]).logContent, true);
    assert.equal(parse(["--log-content", "--port", "1"]).logContent, true);
    assert.equal(parse(["--log-content", "false"]).logContent, false);
    assert.equal(parse(["--log-content=0"]).logContent, false);
    assert.equal(parse([], { LLAMUX_LOG_CONTENT: "1" }).logContent, true);
    assert.equal(parse([], { LLAMUX_LOG_CONTENT: "FALSE" }).logContent, false);
    assertConfigError(["--log-content", "maybe"], {}, /--log-content/);
    assertConfigError([], { LLAMUX_LOG_CONTENT: "" }, /LLAMUX_LOG_CONTENT/);
  });

  test("every option can be set by its LLAMUX_* environment variable", () => {
    const env = Object.fromEntries(TABLE.map(([, envName, raw]) => [envName, raw]));
    assert.deepEqual(pick(parse([], env), TABLE_KEYS), EXPECTED_FROM_TABLE);
  });

  test("every option can be set in a JSON config file with kebab-case keys", () => {
    const obj = Object.fromEntries(TABLE.map(([name, , , value]) => [name, value]));
    const file = writeFile("json", JSON.stringify(obj));
    assert.deepEqual(pick(parse(["--config", file]), TABLE_KEYS), EXPECTED_FROM_TABLE);
  });

  test("every option can be set in a YAML config file with camelCase keys", () => {
    const yaml = TABLE.map(([name, , , value]) => `${camel(name)}: ${JSON.stringify(value)}`).join("\n");
    const file = writeFile("yaml", yaml);
    assert.deepEqual(pick(parse(["--config", file]), TABLE_KEYS), EXPECTED_FROM_TABLE);
  });

  test("YAML is used for any extension but .json (.yml, .conf), and .JSON is JSON", () => {
    assert.equal(parse(["--config", writeFile("yml", "slots: 6\nctx-per-slot: 1024\n")]).ctxPerSlot, 1024);
    assert.equal(parse(["--config", writeFile("conf", "stepTokens: 64\n")]).stepTokens, 64);
    // Duplicate keys: JSON.parse keeps the last, a YAML parser refuses them, so this proves JSON parsing.
    assert.equal(parse(["--config", writeFile("JSON", '{"slots": 2, "slots": 3}')]).slots, 3);
    assert.equal(parse(["--config", writeFile("json", '{"slots": 2, "slots": 5}')]).slots, 5);
  });

  test("string numbers in a config file are accepted", () => {
    assert.equal(parse(["--config", writeFile("json", '{"port": "7070"}')]).port, 7070);
  });

  test("LLAMUX_CONFIG names the config file; --config overrides it", () => {
    const a = writeFile("json", '{"slots": 2}');
    const b = writeFile("yaml", "slots: 3\n");
    assert.equal(parse([], { LLAMUX_CONFIG: a }).slots, 2);
    assert.equal(parse(["--config", b], { LLAMUX_CONFIG: a }).slots, 3);
  });
});

describe("parseServeConfig precedence: CLI > env > file > default", () => {
  const file = () => writeFile("yaml", "port: 1111\nctx-per-slot: 111\nlog-level: warn\n");

  test("the command line beats env and file", () => {
    const cfg = parse(["--config", file(), "--port", "3333", "--ctx-per-slot", "333"], { LLAMUX_PORT: "2222", LLAMUX_CTX_PER_SLOT: "222" });
    assert.deepEqual(pick(cfg, ["port", "ctxPerSlot", "logLevel"]), { port: 3333, ctxPerSlot: 333, logLevel: "warn" });
  });

  test("env beats the file", () => {
    const cfg = parse(["--config", file()], { LLAMUX_PORT: "2222", LLAMUX_CTX_PER_SLOT: "222" });
    assert.deepEqual(pick(cfg, ["port", "ctxPerSlot", "logLevel"]), { port: 2222, ctxPerSlot: 222, logLevel: "warn" });
  });

  test("the file beats the default", () => {
    const cfg = parse(["--config", file()]);
    assert.deepEqual(pick(cfg, ["port", "ctxPerSlot", "logLevel", "slots"]), { port: 1111, ctxPerSlot: 111, logLevel: "warn", slots: 4 });
  });

  test("each option independently takes its highest-precedence source", () => {
    const f = writeFile("json", JSON.stringify({ host: "file-host", slots: 5, "step-tokens": 100, alias: "file-alias" }));
    const cfg = parse(["--config", f, "--host", "cli-host"], { LLAMUX_SLOTS: "6", LLAMUX_GPU: "cuda" });
    assert.deepEqual(pick(cfg, ["host", "slots", "stepTokens", "alias", "gpu", "port"]), {
      host: "cli-host",
      slots: 6,
      stepTokens: 100,
      alias: "file-alias",
      gpu: "cuda",
      port: 8080,
    });
  });

  test("an invalid value in a lower-precedence source does not matter when a higher one is set", () => {
    assert.equal(parse(["--port", "1234"], { LLAMUX_PORT: "not-a-port" }).port, 1234);
    assert.equal(parse([], { LLAMUX_SLOTS: "7" }).slots, 7);
    const bad = writeFile("json", '{"slots": 0}');
    assert.equal(parse(["--config", bad], { LLAMUX_SLOTS: "7" }).slots, 7);
  });

  test("when a flag is repeated the last one wins", () => {
    assert.equal(parse(["--slots", "2", "--slots", "5"]).slots, 5);
  });
});

describe("parseServeConfig errors", () => {
  test("invalid CLI values are ConfigErrors naming the flag", () => {
    assertConfigError(["--slots", "0"], {}, /--slots/);
    assertConfigError(["--slots", "257"], {}, /--slots/);
    assertConfigError(["--slots", "two"], {}, /--slots/, /"two"/);
    assertConfigError(["--port", "70000"], {}, /--port/);
    assertConfigError(["--port", "-1"], {}, /--port/);
    assertConfigError(["--port", "80.5"], {}, /--port/);
    assertConfigError(["--agent-port", "70000"], {}, /--agent-port/);
    assertConfigError([], { LLAMUX_AGENT_PORT: "" }, /LLAMUX_AGENT_PORT/);
    assertConfigError(["--ctx-per-slot", "8"], {}, /--ctx-per-slot/);
    assertConfigError(["--step-tokens", "9000"], {}, /--step-tokens/);
    assertConfigError(["--gpu", "metal"], {}, /--gpu/, /metal/);
    assertConfigError(["--log-level", "loud"], {}, /--log-level/);
    assertConfigError(["--model", ""], {}, /--model/);
    assertConfigError(["--max-body-bytes", "0"], {}, /--max-body-bytes/);
  });

  test("invalid env values are ConfigErrors naming the env var", () => {
    assertConfigError([], { LLAMUX_SLOTS: "abc" }, /LLAMUX_SLOTS/, /"abc"/);
    assertConfigError([], { LLAMUX_GPU: "metal" }, /LLAMUX_GPU/);
    assertConfigError([], { LLAMUX_LOG_LEVEL: "loud" }, /LLAMUX_LOG_LEVEL/);
    assertConfigError([], { LLAMUX_THREADS: "0" }, /LLAMUX_THREADS/);
  });

  test("invalid config-file values are ConfigErrors naming the option and the file as source", () => {
    assertConfigError(["--config", writeFile("json", '{"slots": 0}')], {}, /config slots/);
    assertConfigError(["--config", writeFile("yaml", "ctxPerSlot: tiny\n")], {}, /config ctx-per-slot/);
    assertConfigError(["--config", writeFile("yaml", "gpu: metal\n")], {}, /config gpu/);
  });

  test("an unknown flag is a ConfigError naming it", () => {
    assertConfigError(["--bogus"], {}, /--bogus/);
    assertConfigError(["--bogus", "1"], {}, /--bogus/);
    assertConfigError(["-x"], {}, /-x/);
  });

  test("a positional argument or a flag without its value is a ConfigError", () => {
    assertConfigError(["model.gguf"], {}, /model\.gguf/);
    assertConfigError(["--port"], {}, /--port/);
  });

  test("an unknown key in a config file is a ConfigError naming the key and file", () => {
    const file = writeFile("yaml", "slots: 2\nbogusKey: 1\n");
    assertConfigError(["--config", file], {}, /bogusKey/, new RegExp(path.basename(file).replace(".", "\\.")));
    // "config" and "help" are flags, not file options
    assertConfigError(["--config", writeFile("json", '{"config": "x.yaml"}')], {}, /'config'/);
  });

  test("a config file that is not an object of options is a ConfigError", () => {
    assertConfigError(["--config", writeFile("json", "[1, 2]")], {}, /must hold an object/);
    assertConfigError(["--config", writeFile("yaml", "just a string\n")], {}, /must hold an object/);
    assertConfigError(["--config", writeFile("yaml", "")], {}, /must hold an object/);
  });

  test("a missing config file is a ConfigError naming it", () => {
    const missing = path.join(dir, "does-not-exist.yaml");
    assertConfigError(["--config", missing], {}, /cannot read config file/, /does-not-exist\.yaml/);
    assertConfigError([], { LLAMUX_CONFIG: missing }, /does-not-exist\.yaml/);
  });

  test("a config file with a syntax error is a ConfigError naming the file", () => {
    const json = writeFile("json", "{ not json");
    assertConfigError(["--config", json], {}, new RegExp(path.basename(json).replace(".", "\\.")));
    const yaml = writeFile("yaml", "a: [1,\n b");
    assertConfigError(["--config", yaml], {}, new RegExp(path.basename(yaml).replace(".", "\\.")));
  });

  test("an empty LLAMUX_PORT / --port '' / 'port:' (null) never silently means port 0", () => {
    // Acceptable outcomes: a ConfigError naming the source, or (env/file only) the default.
    const outcome = (argv: string[], env: Record<string, string>): number | string => {
      try {
        return parse(argv, env).port;
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.message;
      }
    };
    const env = outcome([], { LLAMUX_PORT: "" });
    assert.ok(env === 8080 || (typeof env === "string" && /LLAMUX_PORT/.test(env)), `LLAMUX_PORT='' gave ${String(env)}`);
    const cli = outcome(["--port", ""], {});
    assert.ok(typeof cli === "string" && /--port/.test(cli), `--port '' gave ${String(cli)}`);
    const file = outcome(["--config", writeFile("yaml", "port:\n")], {});
    assert.ok(file === 8080 || (typeof file === "string" && /port/.test(file)), `'port:' gave ${String(file)}`);
  });
});

describe("--database-url", () => {
  test("takes postgres:// and postgresql:// URLs; anything else is refused naming the option", () => {
    assert.equal(parse([], { LLAMUX_DATABASE_URL: "postgresql://h/db" }).databaseUrl, "postgresql://h/db");
    assertConfigError(["--database-url", "mysql://h/db"], {}, /--database-url/, /postgres:\/\//);
    assertConfigError([], { LLAMUX_DATABASE_URL: "" }, /LLAMUX_DATABASE_URL/);
    assertConfigError(["--database-pool-size", "0"], {}, /--database-pool-size/);
  });
});

describe("--help and serveHelp()", () => {
  test("--help and -h return null", () => {
    assert.equal(parseServeConfig(["--help"], {}), null);
    assert.equal(parseServeConfig(["-h"], {}), null);
  });

  test("--help wins over other flags, even invalid values", () => {
    assert.equal(parseServeConfig(["--port", "1", "--help"], {}), null);
    assert.equal(parseServeConfig(["--slots", "0", "--help"], { LLAMUX_GPU: "metal" }), null);
  });

  test("the help text starts with the usage line", () => {
    assert.match(serveHelp(), /^Usage: llamux serve \[options\]/);
  });

  test("every option is listed with its environment variable", () => {
    const help = serveHelp();
    for (const [name, envName] of TABLE) {
      const line = help.split("\n").find((l) => l.trimStart().startsWith(`--${name} `));
      assert.ok(line, `--${name} is listed`);
      assert.match(line, new RegExp(`\\b${envName}\\b`), `--${name} shows ${envName}`);
    }
    assert.match(help, /--config\s+LLAMUX_CONFIG/);
    assert.match(help, /--help\b/);
  });

  test("help lines and parsed options correspond one to one, env names follow LLAMUX_<FLAG>", () => {
    const lines = serveHelp()
      .split("\n")
      .filter((l) => /^\s+--/.test(l));
    const listed = new Map<string, string | undefined>();
    for (const l of lines) {
      const m = /^\s+--([a-z][a-z-]*)\s+(LLAMUX_[A-Z_]+)?/.exec(l);
      assert.ok(m, `malformed help line: ${l}`);
      listed.set(m[1]!, m[2]);
    }
    for (const [name, envName] of listed) {
      if (name === "help") continue;
      assert.equal(envName, `LLAMUX_${name.toUpperCase().replaceAll("-", "_")}`, `env var of --${name}`);
    }
    const optionNames = [...listed.keys()].filter((n) => n !== "help" && n !== "config");
    // `models` is the config file's list of models, described under --config.
    const keys = Object.keys(parse([])).filter((k) => k !== "models");
    assert.deepEqual(optionNames.map(camel).sort(), keys.sort(), "every config key has exactly one help line");
  });

  test("defaults are shown in the help text", () => {
    const help = serveHelp();
    const lineOf = (name: string) => help.split("\n").find((l) => l.trimStart().startsWith(`--${name} `)) ?? "";
    assert.match(lineOf("port"), /\[default: 8080\]/);
    assert.match(lineOf("slots"), /\[default: 4\]/);
    assert.match(lineOf("host"), /\[default: 127\.0\.0\.1\]/);
    assert.doesNotMatch(lineOf("model"), /\[default:/, "null defaults are not shown");
  });
});

describe("overload and connection options", () => {
  test("--max-queued defaults to 8 waiting requests per slot, and follows --slots from any source", () => {
    assert.equal(parse(["--slots", "16"]).maxQueued, 128);
    assert.equal(parse([], { LLAMUX_SLOTS: "2" }).maxQueued, 16);
    assert.equal(parse(["--slots", "16", "--max-queued", "5"]).maxQueued, 5);
    assert.equal(parse(["--config", writeFile("json", '{"slots": 3, "maxQueued": null}')]).maxQueued, 24);
    assertConfigError(["--max-queued", "-1"], {}, /--max-queued/);
    assertConfigError([], { LLAMUX_MAX_QUEUED: "" }, /LLAMUX_MAX_QUEUED/);
  });

  test("a head deadline past the whole request's is refused, naming both", () => {
    assertConfigError(
      ["--headers-timeout-ms", "5000", "--request-timeout-ms", "4000"],
      {},
      /--headers-timeout-ms \(5000\) must not exceed --request-timeout-ms \(4000\)/,
    );
    assert.equal(parse(["--headers-timeout-ms", "4000", "--request-timeout-ms", "4000"]).headersTimeoutMs, 4000);
    assertConfigError(["--headers-timeout-ms", "0"], {}, /--headers-timeout-ms/);
  });

  test("--help documents each of them with its default", () => {
    const help = serveHelp();
    assert.match(help, /--max-queued\s+LLAMUX_MAX_QUEUED\s+.*\[default: 8 x --slots\]/);
    assert.match(help, /--queue-timeout-ms\s+LLAMUX_QUEUE_TIMEOUT_MS\s+.*\[default: 60000\]/);
    assert.match(help, /--headers-timeout-ms\s+LLAMUX_HEADERS_TIMEOUT_MS\s+.*\[default: 10000\]/);
    assert.match(help, /--request-timeout-ms\s+LLAMUX_REQUEST_TIMEOUT_MS\s+.*\[default: 60000\]/);
    assert.match(help, /--keep-alive-timeout-ms\s+LLAMUX_KEEP_ALIVE_TIMEOUT_MS\s+.*\[default: 5000\]/);
  });
});

describe("Redis options", () => {
  test("bad values are refused naming the option", () => {
    assertConfigError(["--redis-url", "localhost:6379"], {}, /--redis-url/, /redis:\/\//);
    assertConfigError(["--redis-fallback", "ignore"], {}, /--redis-fallback/);
    assertConfigError([], { LLAMUX_REDIS_REPLICAS: "0" }, /LLAMUX_REDIS_REPLICAS/);
    assertConfigError(["--redis-lease-ms", "10"], {}, /--redis-lease-ms/);
  });
});

describe("several models (the config file's models list)", () => {
  test("without a list, the top-level options describe the one model", () => {
    const cfg = parse(["--model", "/m/a.gguf", "--alias", "gpt-x", "--slots", "3", "--ctx-per-slot", "512", "--chat-template", "/t.jinja"]);
    assert.deepEqual(cfg.models, [
      {
        model: "/m/a.gguf",
        id: null,
        aliases: ["gpt-x"],
        slots: 3,
        ctxPerSlot: 512,
        threads: cfg.threads,
        gpu: "auto",
        chatTemplate: "/t.jinja",
        stepTokens: 512,
        coalesceMs: 3,
        followUpMs: 10,
        maxQueued: 24,
        kvCacheMaxBytes: 2 * 1024 ** 3,
        price: null,
      },
    ]);
  });

  test("price: per model in the list (the top-level one is the default), as JSON in a flag or variable; cached_input defaults to input", () => {
    const file = writeFile(
      "yaml",
      [
        "price: { input: 1, output: 2 }",
        "models:",
        "  - model: /m/a.gguf",
        "    price: { input: 0.15, cached_input: 0.075, output: 0.6 }",
        "  - model: /m/b.gguf",
      ].join("\n"),
    );
    const cfg = parse(["--config", file]);
    assert.deepEqual(
      cfg.models.map((m) => m.price),
      [
        { input: 0.15, cachedInput: 0.075, output: 0.6 },
        { input: 1, cachedInput: 1, output: 2 },
      ],
    );
    assert.deepEqual(parse(["--price", '{"input": 3, "output": 4}']).models[0]!.price, { input: 3, cachedInput: 3, output: 4 });
    assert.deepEqual(parse([], { LLAMUX_PRICE: '{"input": 0, "cachedInput": 0, "output": 1}' }).models[0]!.price, { input: 0, cachedInput: 0, output: 1 });
    assertConfigError(["--price", '{"input": -1, "output": 1}'], {}, /--price/);
    assertConfigError(["--price", '{"input": 1}'], {}, /--price/);
    assertConfigError(["--price", "cheap"], {}, /--price/);
  });

  test("each entry sets its own options; what it leaves out comes from the top level", () => {
    const file = writeFile(
      "yaml",
      [
        "slots: 6",
        "threads: 1",
        "max-queued: 10",
        "models:",
        "  - model: /m/a.gguf",
        "    id: small",
        "    alias: [fast, cheap]",
        "    ctx-per-slot: 256",
        "  - model: /m/b.gguf",
        "    alias: big",
        "    slots: 2",
        "    chatTemplate: /b.jinja",
        "    maxQueued: 3",
      ].join("\n"),
    );
    const [a, b] = parse(["--config", file]).models;
    assert.deepEqual(
      [a!.model, a!.id, a!.aliases, a!.slots, a!.ctxPerSlot, a!.threads, a!.chatTemplate, a!.maxQueued],
      ["/m/a.gguf", "small", ["fast", "cheap"], 6, 256, 1, null, 10],
    );
    assert.deepEqual(
      [b!.model, b!.id, b!.aliases, b!.slots, b!.ctxPerSlot, b!.chatTemplate, b!.maxQueued],
      ["/m/b.gguf", null, ["big"], 2, 2048, "/b.jinja", 3],
    );
    const flags = parse(["--config", file, "--ctx-per-slot", "1024"]).models;
    assert.deepEqual(
      flags.map((m) => m.ctxPerSlot),
      [256, 1024],
      "a flag changes the default, not an entry's own value",
    );
  });

  test("without --max-queued anywhere, each model may queue 8 per slot of its own", () => {
    const file = writeFile(
      "json",
      JSON.stringify({
        models: [
          { model: "/a.gguf", slots: 2 },
          { model: "/b.gguf", slots: 5 },
        ],
      }),
    );
    assert.deepEqual(
      parse(["--config", file]).models.map((m) => m.maxQueued),
      [16, 40],
    );
  });

  test("--model, --alias and --chat-template cannot be combined with a list, from any source", () => {
    const file = writeFile("json", JSON.stringify({ models: [{ model: "/a.gguf" }] }));
    assertConfigError(["--config", file, "--model", "/x.gguf"], {}, /--model cannot be combined with the config file's 'models' list/);
    assertConfigError(["--config", file], { LLAMUX_ALIAS: "x" }, /--alias cannot be combined/);
    const both = writeFile("json", JSON.stringify({ chatTemplate: "/t", models: [{ model: "/a.gguf" }] }));
    assertConfigError(["--config", both], {}, /--chat-template cannot be combined/);
  });

  test("bad lists and entries are ConfigErrors naming the entry and the option", () => {
    const bad = (models: unknown, ...patterns: RegExp[]) => assertConfigError(["--config", writeFile("json", JSON.stringify({ models }))], {}, ...patterns);
    bad([], /'models' must be a non-empty list/);
    bad({ model: "/a.gguf" }, /'models' must be a non-empty list/);
    bad(["/a.gguf"], /models\[0\] must be an object/);
    bad([{ id: "x" }], /models\[0\]: 'model' .* is required/);
    bad([{ model: "/a.gguf" }, { model: "/b.gguf", port: 1 }], /models\[1\]: unknown option 'port'/);
    bad([{ model: "/a.gguf", slots: 0 }], /models\[0\]: invalid value for 'slots'/);
    bad([{ model: "/a.gguf", alias: [""] }], /models\[0\]: 'alias' must be a name or a list of names/);
    bad(
      [
        { model: "/a.gguf", id: "m" },
        { model: "/b.gguf", alias: "m" },
      ],
      /models\[1\]: the name 'm' is already used by another model/,
    );
  });
});
