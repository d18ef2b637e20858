// The ioredis client a RedisQuota talks through, set to fail fast: no offline
// queue (a command while disconnected fails at once instead of waiting for
// a reconnect), no retries of a command, a short command timeout; the client
// reconnects on its own in the background. A quota decision is worth less
// than a request's latency: when Redis cannot answer in time, the fallback does.
import { createHash } from "node:crypto";
import { Redis } from "ioredis";

export interface RedisClientOptions {
  url: string;
  /** Connect and command timeout. */
  timeoutMs: number;
}

export function createRedisClient(o: RedisClientOptions): Redis {
  const redis = new Redis(o.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: o.timeoutMs,
    connectTimeout: o.timeoutMs,
    // Reconnect every half second for ever: the quota notices the return through its probe.
    retryStrategy: () => 500,
    lazyConnect: false,
  });
  // Connection errors are reported by the commands that fail; without a
  // listener ioredis would print each reconnect attempt's error to stderr.
  redis.on("error", () => undefined);
  return redis;
}

/** Resolves once the client is connected, or after `timeoutMs` (the caller then starts in fallback). */
export function whenReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.once("ready", onReady);
  });
}

/** A Lua script run by its SHA1, loaded on first use (and again after Redis restarts without it). */
export class LuaScript {
  readonly sha: string;

  constructor(readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return await redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}
