#!/usr/bin/env node
// llamux command line: serve | make-model | bench | haproxy-config | audit.
// The bench and make-model commands are imported when run: the bench's ceiling
// loads node-llama-cpp, which a serving front must not carry (see threads.ts).
import { ModelResolutionError } from "../models/resolve.js";
import { ConfigError, parseServeConfig, serveHelp } from "./config.js";
import { createLogger } from "./logger.js";
import { startServer, VERSION } from "./server.js";

const USAGE = `llamux ${VERSION}: OpenAI-compatible LLM serving on llama.cpp

Usage:
  llamux serve [options]        serve a GGUF model over the OpenAI API (see llamux serve --help)
  llamux make-model [options]   write a synthetic GGUF with random weights (see llamux make-model --help)
  llamux bench [options]        streaming load generator; 'llamux bench ceiling' for the raw engine ceiling
  llamux haproxy-config [...]   print an HAProxy configuration for several replicas (see docs/cluster.md)
  llamux audit verify [options] check the audit log's hash chain (same database options as serve; see docs/audit.md)
  llamux --version`;

async function serve(argv: string[]): Promise<number> {
  const config = parseServeConfig(argv);
  if (!config) {
    console.log(serveHelp());
    return 0;
  }
  const log = createLogger(config.logLevel);
  const server = await startServer(config, log);
  let signals = 0;
  return new Promise<number>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (++signals > 1) {
        log.warn({ signal: sig }, "second signal: exiting now");
        process.exit(1);
      }
      log.info({ signal: sig }, "shutting down");
      server.close().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, "error during shutdown");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "make-model":
      return (await import("../models/makeModelCli.js")).makeModelMain(rest);
    case "bench":
      return (await import("../bench/cli.js")).benchMain(rest);
    case "haproxy-config":
      return (await import("./cluster/haproxyConfigCli.js")).haproxyConfigMain(rest);
    case "audit":
      return (await import("./audit/verifyCli.js")).auditMain(rest);
    case "--version":
    case "-v":
      console.log(VERSION);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      console.error(`llamux: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof ModelResolutionError) console.error(`llamux: ${err.message}`);
    else console.error("llamux: fatal:", err);
    process.exit(1);
  },
);
