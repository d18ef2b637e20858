// Reading and parsing /v1 request bodies. A small body is parsed inline, as
// body-parser would; a large one (a long prompt, a big schema) is parsed on a
// worker thread, so the front's one event loop, which streams every tenant's
// tokens, never spends tens of milliseconds on one tenant's multi-megabyte
// body (measured: 16 ms of main-thread time per 4 MB body, most of it the
// nesting scan and JSON.parse; eight such bodies in a loop took another
// tenant's time to first token from 5 to 65 ms).
//
// The worker takes one body at a time, tenants in turn: a tenant sending many
// large bodies waits behind its own, and another tenant's large body waits for
// at most the one being parsed. Parsed values come back by structured clone,
// which for a long prompt is a memcpy; bodies refused for their shape never
// come back at all (see jsonParseWorker.ts).
import express, { type RequestHandler } from "express";
import { Worker } from "node:worker_threads";
import { ApiError } from "../errors.js";
import { parseJsonBody, type ParseJob, type ParseLimits, type ParseReply } from "./jsonLimits.js";

/** Bodies from this size up go to the parse worker (smaller ones cost less than the hop). */
export const WORKER_PARSE_MIN_BYTES = 256 * 1024;

interface Pending {
  tenant: string;
  body: Buffer;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * One worker thread parsing large bodies in tenant round-robin order. Started
 * on first use; close() stops it and fails what is still waiting.
 */
export class JsonParsePool {
  private worker: Worker | null = null;
  /** Tenant → its bodies waiting, oldest first; a Map iterates in insertion order, so re-inserting a tenant sends it to the back. */
  private readonly waiting = new Map<string, Pending[]>();
  private current: { id: number; job: Pending } | null = null;
  /** Whose body was parsed last: it goes after any other tenant waiting. */
  private lastTenant: string | null = null;
  private nextId = 1;
  private closed = false;

  constructor(private readonly limits: ParseLimits) {}

  parse(tenant: string, body: Buffer): Promise<unknown> {
    if (this.closed) return Promise.resolve(parseJsonBody(body, this.limits));
    return new Promise((resolve, reject) => {
      const queue = this.waiting.get(tenant);
      const job = { tenant, body, resolve, reject };
      if (queue) queue.push(job);
      else this.waiting.set(tenant, [job]);
      this.pump();
    });
  }

  /** Stops the worker; bodies still waiting get a retryable 503 (the server is shutting down). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const gone = new ApiError("engine_unavailable", "The server is shutting down. Please retry.", null, 1);
    this.current?.job.reject(gone);
    this.current = null;
    for (const queue of this.waiting.values()) for (const job of queue) job.reject(gone);
    this.waiting.clear();
    const worker = this.worker;
    this.worker = null;
    await worker?.terminate();
  }

  private pump(): void {
    if (this.current || this.closed) return;
    let picked: [string, Pending[]] | null = null;
    for (const entry of this.waiting) {
      picked ??= entry;
      if (entry[0] !== this.lastTenant) {
        picked = entry;
        break;
      }
    }
    if (!picked) return;
    const [tenant, queue] = picked;
    this.lastTenant = tenant;
    const job = queue.shift()!;
    this.waiting.delete(tenant);
    if (queue.length > 0) this.waiting.set(tenant, queue);
    const id = this.nextId++;
    this.current = { id, job };
    // The bytes move to the worker without a copy (the Buffer may be a view
    // into a larger pool: copy just its bytes then).
    const bytes =
      job.body.byteOffset === 0 && job.body.byteLength === job.body.buffer.byteLength
        ? job.body.buffer
        : job.body.buffer.slice(job.body.byteOffset, job.body.byteOffset + job.body.byteLength);
    const message: ParseJob = { id, body: bytes as ArrayBuffer, limits: this.limits };
    this.ensureWorker().postMessage(message, [message.body]);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL("./jsonParseWorker.js", import.meta.url));
    // Never what keeps the process alive: the server's close() stops it.
    worker.unref();
    worker.on("message", (reply: ParseReply) => {
      const current = this.current;
      if (!current || current.id !== reply.id) return;
      this.current = null;
      if (reply.ok) current.job.resolve(reply.value);
      else current.job.reject(new ApiError(reply.error.code, reply.error.message, reply.error.param));
      this.pump();
    });
    // A worker that dies (out of memory on a hostile body) fails the body it
    // held with a 413, and the next body starts a new worker.
    worker.on("error", (err) => this.lost(worker, err));
    worker.on("exit", () => this.lost(worker, new Error("the JSON parse worker exited")));
    this.worker = worker;
    return worker;
  }

  private lost(worker: Worker, err: Error): void {
    if (this.worker !== worker) return;
    this.worker = null;
    const current = this.current;
    this.current = null;
    current?.job.reject(new ApiError("request_too_large", `The request body could not be parsed within the server's memory bounds (${err.message}).`));
    this.pump();
  }
}

/**
 * The /v1 body middleware: reads the raw body (body-parser's raw(): size
 * limit, Content-Encoding, the same 413), then parses it inline or on the
 * pool's worker. `tenantOf` names whose turn a large body takes.
 */
export function jsonBody(o: {
  limit: number;
  limits: ParseLimits;
  pool: JsonParsePool | null;
  tenantOf: (res: express.Response) => string;
  workerMinBytes?: number;
}): RequestHandler[] {
  const workerMinBytes = o.workerMinBytes ?? WORKER_PARSE_MIN_BYTES;
  const parse: RequestHandler = (req, res, next) => {
    const raw: unknown = req.body;
    if (!Buffer.isBuffer(raw)) return next();
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers["content-type"] ?? "")?.[1];
    if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
      return next(new ApiError("unsupported_media_type", `Unsupported charset "${charset.toUpperCase().slice(0, 40)}": send the JSON body as UTF-8.`));
    }
    if (o.pool === null || raw.length < workerMinBytes) {
      try {
        req.body = parseJsonBody(raw, o.limits);
      } catch (err) {
        return next(err);
      }
      return next();
    }
    o.pool.parse(o.tenantOf(res), raw).then(
      (value) => {
        req.body = value;
        next();
      },
      (err: unknown) => next(err),
    );
  };
  return [express.raw({ limit: o.limit, type: () => true }), parse];
}
