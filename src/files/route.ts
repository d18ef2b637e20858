// /v1/files: upload (multipart, streamed to disk), list, retrieve, content,
// delete; OpenAI's shapes. Uploads are bounded (--max-file-bytes, one file,
// a few short fields) and never buffered in memory: multer writes the part to
// the store's tmp dir as it arrives, and a part over the bound is cut off with
// a 413 and its partial file removed.
import fs from "node:fs";
import { pipeline } from "node:stream/promises";
import { Router, type RequestHandler } from "express";
import multer from "multer";
import { ApiError } from "../errors.js";
import { randomId } from "../openai/common.js";
import type { FileStore } from "./fileStore.js";

export interface FilesRouteOptions {
  /** Largest upload accepted, in bytes (OpenAI: 200 MB for batch input). */
  maxFileBytes: number;
}

/** The purposes an upload may have: only batch input is served. */
const UPLOAD_PURPOSES = new Set(["batch"]);

function uploadError(err: unknown, maxFileBytes: number): ApiError {
  const code = (err as { code?: string }).code;
  if (code === "LIMIT_FILE_SIZE") return new ApiError("request_too_large", `The file exceeds the limit of ${maxFileBytes} bytes.`, "file");
  if (code === "LIMIT_UNEXPECTED_FILE" || code === "LIMIT_FILE_COUNT")
    return new ApiError("invalid_value", "Send exactly one file, in the 'file' field.", "file");
  if (typeof code === "string" && code.startsWith("LIMIT_"))
    return new ApiError("invalid_body", `The multipart body is not accepted: ${(err as Error).message}.`, null);
  if (err instanceof ApiError) return err;
  return new ApiError("invalid_body", `The multipart body could not be read: ${(err as Error)?.message ?? String(err)}.`, null);
}

function pageParams(query: Record<string, unknown>, maxLimit: number, defaultLimit: number): { after: string | null; limit: number; order: "asc" | "desc" } {
  const after = query.after;
  if (after !== undefined && typeof after !== "string") throw new ApiError("invalid_type", "Invalid 'after': must be a string.", "after");
  let limit = defaultLimit;
  if (query.limit !== undefined) {
    limit = Number(query.limit);
    if (typeof query.limit !== "string" || !Number.isInteger(limit) || limit < 1 || limit > maxLimit) {
      throw new ApiError("invalid_value", `Invalid 'limit': must be an integer between 1 and ${maxLimit}.`, "limit");
    }
  }
  const order = query.order ?? "desc";
  if (order !== "asc" && order !== "desc") throw new ApiError("invalid_value", "Invalid 'order': must be 'asc' or 'desc'.", "order");
  return { after: after ?? null, limit, order };
}

export { pageParams };

export function filesRoute(store: FileStore, opts: FilesRouteOptions): Router {
  const router = Router();
  const upload = multer({
    storage: multer.diskStorage({ destination: store.tmpDir(), filename: (_req, _file, cb) => cb(null, randomId("upload")) }),
    limits: { fileSize: opts.maxFileBytes, files: 1, fields: 4, fieldSize: 1024, fieldNameSize: 64, parts: 5, headerPairs: 50 },
  }).single("file");
  const receive: RequestHandler = (req, res, next) => {
    if (!req.is("multipart/form-data")) {
      throw new ApiError("unsupported_media_type", "Upload files as multipart/form-data with a 'file' part and a 'purpose' field.");
    }
    upload(req, res, (err?: unknown) => (err ? next(uploadError(err, opts.maxFileBytes)) : next()));
  };

  router.post("/v1/files", receive, async (req, res) => {
    const file = req.file;
    const removeUpload = () => (file ? fs.promises.rm(file.path, { force: true }) : Promise.resolve());
    try {
      const purpose = (req.body as Record<string, unknown> | undefined)?.purpose;
      if (purpose === undefined) throw new ApiError("missing_required_parameter", "Missing required parameter: 'purpose'.", "purpose");
      if (typeof purpose !== "string" || !UPLOAD_PURPOSES.has(purpose)) {
        throw new ApiError("invalid_value", "Invalid 'purpose': only 'batch' is supported.", "purpose");
      }
      if (!file) throw new ApiError("missing_required_parameter", "Missing required parameter: 'file'.", "file");
      // multer reads the part's filename as latin1; clients send UTF-8.
      const filename = Buffer.from(file.originalname, "latin1").toString("utf8").slice(0, 255);
      if (!filename.endsWith(".jsonl")) throw new ApiError("invalid_value", "Invalid 'file': a batch input file must be a .jsonl file.", "file");
      if (file.size === 0) throw new ApiError("invalid_value", "Invalid 'file': the file is empty.", "file");
      const created = await store.adopt(res.locals.tenant.id, file.path, { filename, purpose: "batch", bytes: file.size });
      res.json(created);
    } catch (err) {
      await removeUpload();
      throw err;
    }
  });

  router.get("/v1/files", async (req, res) => {
    const page = pageParams(req.query as Record<string, unknown>, 10_000, 10_000);
    const purpose = req.query.purpose;
    if (purpose !== undefined && typeof purpose !== "string") throw new ApiError("invalid_type", "Invalid 'purpose': must be a string.", "purpose");
    const { data, hasMore } = await store.list(res.locals.tenant.id, { ...page, purpose: purpose ?? null });
    res.json({ object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore });
  });

  const notFound = (id: string) => new ApiError("not_found", `No such File object: ${id}`, "file_id");

  router.get("/v1/files/:id", async (req, res) => {
    const file = await store.get(res.locals.tenant.id, req.params.id);
    if (!file) throw notFound(req.params.id);
    res.json(file);
  });

  router.get("/v1/files/:id/content", async (req, res) => {
    const stream = await store.open(res.locals.tenant.id, req.params.id);
    if (!stream) throw notFound(req.params.id);
    res.setHeader("content-type", "application/octet-stream");
    // A client that leaves mid-download ends the pipeline: the file handle is closed either way.
    await pipeline(stream, res).catch(() => res.destroy());
  });

  router.delete("/v1/files/:id", async (req, res) => {
    if (!(await store.delete(res.locals.tenant.id, req.params.id))) throw notFound(req.params.id);
    res.json({ id: req.params.id, object: "file", deleted: true });
  });
  return router;
}
