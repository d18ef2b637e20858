// GET usage/completions, usage/embeddings and costs: the reports of
// src/usage/report.ts over the usage log. Mounted twice: under /admin, guarded
// by the admin key, over every tenant; and under /v1 for a tenant's own key,
// over that tenant alone (the scan itself is limited to it, so no filter can
// reach another tenant's rows).
import { Router, type Request, type Response } from "express";
import { ApiError } from "../errors.js";
import { nowSeconds } from "../openai/common.js";
import { pageRange, parseReportQuery, reportPage, type ReportKind } from "../usage/report.js";
import type { UsageLog } from "../usage/usageLog.js";

/** `tenantOf`: null for the admin's view of every tenant, else the only tenant the caller may read. */
export function usageReportRoute(log: UsageLog, tenantOf: (res: Response) => string | null): Router {
  const router = Router();
  const report = (kind: ReportKind) => async (req: Request, res: Response) => {
    // The raw query string, not Express's parsed one: repeated names and brackets are read the same under any query parser.
    const at = req.originalUrl.indexOf("?");
    const q = parseReportQuery(kind, new URLSearchParams(at < 0 ? "" : req.originalUrl.slice(at + 1)), nowSeconds());
    const own = tenantOf(res);
    if (own !== null && q.projectIds && [...q.projectIds].some((id) => id !== own)) {
      throw new ApiError("invalid_value", `Invalid 'project_ids': this API key can read only its own project's usage ('${own}').`, "project_ids");
    }
    const range = pageRange(q);
    const rows = await log.scan({ ...range, kind: kind === "costs" ? null : kind, tenantId: own });
    res.json(reportPage(q, rows));
  };
  router.get("/usage/completions", report("completions"));
  router.get("/usage/embeddings", report("embeddings"));
  router.get("/costs", report("costs"));
  return router;
}
