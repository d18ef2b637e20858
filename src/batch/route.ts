// /v1/batches: create, list, retrieve, cancel; OpenAI's Batch object. The
// work itself is the runner's (runner.ts); these handlers only record intent.
import { Router } from "express";
import { z } from "zod";
import { ApiError } from "../errors.js";
import { nowSeconds, randomId } from "../openai/common.js";
import { pageParams } from "../files/route.js";
import type { FileStore } from "../files/fileStore.js";
import { BATCH_ENDPOINTS, type BatchObject, type BatchStore } from "./batchStore.js";
import type { BatchRunner } from "./runner.js";

const COMPLETION_WINDOW_SECONDS = 24 * 60 * 60;

const createSchema = z
  .object({
    input_file_id: z.string().min(1).max(200),
    endpoint: z.enum(BATCH_ENDPOINTS),
    completion_window: z.literal("24h"),
    // OpenAI's metadata: up to 16 pairs, keys ≤ 64 chars, values ≤ 512.
    metadata: z
      .record(z.string().max(64), z.string().max(512))
      .refine((m) => Object.keys(m).length <= 16, "at most 16 pairs")
      .nullish(),
    output_expires_after: z.unknown().optional(),
  })
  .strict();

function parseCreate(body: unknown): z.infer<typeof createSchema> {
  const r = createSchema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const param = issue.path.join(".") || null;
  const value = param === null ? undefined : (body as Record<string, unknown> | null)?.[param];
  if (issue.code === "unrecognized_keys") {
    const key = (issue as { keys: string[] }).keys[0]!;
    throw new ApiError("unknown_parameter", `Unknown parameter: '${key}'.`, key);
  }
  if (param !== null && value === undefined) throw new ApiError("missing_required_parameter", `Missing required parameter: '${param}'.`, param);
  throw new ApiError("invalid_value", `Invalid '${param}': ${issue.message}.`, param);
}

export function batchesRoute(batches: BatchStore, files: FileStore, runner: BatchRunner): Router {
  const router = Router();
  const notFound = (id: string) => new ApiError("not_found", `No such Batch object: ${id}`, "batch_id");

  router.post("/v1/batches", async (req, res) => {
    const body = parseCreate(req.body);
    const tenantId = res.locals.tenant.id;
    const file = await files.get(tenantId, body.input_file_id);
    if (!file) throw new ApiError("not_found", `No such File object: ${body.input_file_id}`, "input_file_id");
    if (file.purpose !== "batch")
      throw new ApiError("invalid_value", `Invalid 'input_file_id': the file's purpose is '${file.purpose}', not 'batch'.`, "input_file_id");
    const now = nowSeconds();
    const batch: BatchObject = {
      id: randomId("batch", "_"),
      object: "batch",
      endpoint: body.endpoint,
      model: null,
      errors: null,
      input_file_id: file.id,
      completion_window: "24h",
      status: "validating",
      output_file_id: null,
      error_file_id: null,
      created_at: now,
      in_progress_at: null,
      expires_at: now + COMPLETION_WINDOW_SECONDS,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: 0, completed: 0, failed: 0 },
      usage: { input_tokens: 0, input_tokens_details: { cached_tokens: 0 }, output_tokens: 0, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 0 },
      metadata: body.metadata ?? null,
    };
    await batches.create(tenantId, batch);
    runner.run(tenantId, batch.id);
    res.json(batch);
  });

  router.get("/v1/batches", async (req, res) => {
    const page = pageParams(req.query as Record<string, unknown>, 100, 20);
    const { data, hasMore } = await batches.list(res.locals.tenant.id, page);
    res.json({ object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore });
  });

  router.get("/v1/batches/:id", async (req, res) => {
    const batch = await batches.get(res.locals.tenant.id, req.params.id);
    if (!batch) throw notFound(req.params.id);
    res.json(batch);
  });

  router.post("/v1/batches/:id/cancel", async (req, res) => {
    const tenantId = res.locals.tenant.id;
    const batch = await batches.update(tenantId, req.params.id, (b) =>
      b.status === "validating" || b.status === "in_progress" ? { ...b, status: "cancelling", cancelling_at: nowSeconds() } : null,
    );
    if (!batch) throw notFound(req.params.id);
    if (batch.status !== "cancelling") {
      throw new ApiError("invalid_value", `Cannot cancel a batch with status '${batch.status}'.`, "batch_id");
    }
    runner.cancel(batch.id);
    // The runner finalizes it (cut lines, partial output); if it was not running (finalizing just now), it resumes it.
    runner.run(tenantId, batch.id);
    res.json(batch);
  });
  return router;
}
