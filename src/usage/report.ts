// The usage and cost reports in the shape of OpenAI's organization usage and
// costs APIs (/organization/usage/completions, /organization/usage/embeddings,
// /organization/costs): what a query asks (parseReportQuery: every parameter
// checked, a 400 naming the one that is wrong) and the page it gets
// (reportPage: rows summed per bucket and group). Both pure; the route does
// the reading (src/admin/usage.ts).
//
// llamux's names for OpenAI's: a project is a tenant (project_id), an API key
// is one of its keys (api_key_id), `batch` is true for Batch API lines (and,
// grouped by batch, `batch_id` names the batch: an extension).
import { ApiError } from "../errors.js";
import type { ModelPrice, UsageKind, UsageRow } from "./usageLog.js";

export type ReportKind = UsageKind | "costs";

export const BUCKET_WIDTHS = { "1m": 60, "1h": 3600, "1d": 86_400 } as const;
export type BucketWidth = keyof typeof BUCKET_WIDTHS;

/** Buckets per page: OpenAI's defaults and bounds per width (usage), and the costs API's. */
const USAGE_LIMITS: Record<BucketWidth, { default: number; max: number }> = {
  "1d": { default: 7, max: 31 },
  "1h": { default: 24, max: 168 },
  "1m": { default: 60, max: 1440 },
};
const COSTS_LIMITS = { default: 7, max: 180 };

const GROUPS: Record<ReportKind, readonly string[]> = {
  completions: ["project_id", "api_key_id", "model", "batch"],
  embeddings: ["project_id", "api_key_id", "model"],
  costs: ["project_id", "api_key_id", "line_item"],
};
const LISTS = ["project_ids", "api_key_ids", "models", "batch_ids"] as const;
const SCALARS = ["start_time", "end_time", "bucket_width", "limit", "page", "batch"] as const;

export interface ReportQuery {
  kind: ReportKind;
  /** Unix seconds: the range asked for, [startSeconds, endSeconds). */
  startSeconds: number;
  endSeconds: number;
  width: BucketWidth;
  /** First bucket of this page (startSeconds, or where `page` says). */
  pageStartSeconds: number;
  /** Buckets on this page at most. */
  limit: number;
  groupBy: ReadonlySet<string>;
  projectIds: ReadonlySet<string> | null;
  apiKeyIds: ReadonlySet<string> | null;
  models: ReadonlySet<string> | null;
  batchIds: ReadonlySet<string> | null;
  /** true: batch lines only; false: interactive requests only; null: both. */
  batch: boolean | null;
}

/** The page's range as the log is scanned for it: buckets [from + i × width, …) up to `to`. */
export function pageRange(q: ReportQuery): { fromSeconds: number; toSeconds: number; widthSeconds: number; buckets: number } {
  const widthSeconds = BUCKET_WIDTHS[q.width];
  const left = Math.ceil((q.endSeconds - q.pageStartSeconds) / widthSeconds);
  const buckets = Math.min(q.limit, left);
  return { fromSeconds: q.pageStartSeconds, toSeconds: Math.min(q.endSeconds, q.pageStartSeconds + buckets * widthSeconds), widthSeconds, buckets };
}

const bad = (param: string, message: string) => new ApiError("invalid_value", message, param);

/**
 * The query string (as URLSearchParams, so repeated names are kept) as a
 * ReportQuery, or the 400 naming the parameter. A list is given as repeated
 * names (`models=a&models=b`), with brackets (`models[]=a`, `models[0]=a`), or
 * comma-separated (`models=a,b`).
 */
export function parseReportQuery(kind: ReportKind, params: URLSearchParams, nowSeconds: number): ReportQuery {
  const values = new Map<string, string[]>();
  for (const [rawName, value] of params) {
    const name = rawName.replace(/\[\d*\]$/, "");
    const known = (LISTS as readonly string[]).includes(name) || (SCALARS as readonly string[]).includes(name) || name === "group_by";
    if (!known || (name === "batch" && kind !== "completions") || (name === "batch_ids" && kind !== "completions")) {
      throw new ApiError("unknown_parameter", `Unknown parameter: '${rawName}'.`, rawName);
    }
    values.set(name, [...(values.get(name) ?? []), value]);
  }
  const scalar = (name: string): string | null => {
    const v = values.get(name);
    if (!v) return null;
    if (v.length > 1) throw bad(name, `Invalid '${name}': given ${v.length} times; give it once.`);
    return v[0]!;
  };
  const list = (name: string): string[] | null => {
    const v = values.get(name);
    if (!v) return null;
    const items = v.flatMap((s) => s.split(",")).map((s) => s.trim());
    if (items.some((s) => s.length === 0)) throw bad(name, `Invalid '${name}': an empty item.`);
    return items;
  };
  const integer = (name: string, raw: string): number => {
    if (!/^\d{1,15}$/.test(raw)) throw bad(name, `Invalid '${name}': expected an integer ≥ 0 (Unix seconds for times), got '${raw.slice(0, 40)}'.`);
    return Number(raw);
  };

  const startRaw = scalar("start_time");
  if (startRaw === null) throw new ApiError("missing_required_parameter", "Missing required parameter: 'start_time' (Unix seconds, inclusive).", "start_time");
  const startSeconds = integer("start_time", startRaw);
  const endRaw = scalar("end_time");
  const endSeconds = endRaw === null ? Math.max(nowSeconds + 1, startSeconds + 1) : integer("end_time", endRaw);
  if (endSeconds <= startSeconds) throw bad("end_time", `Invalid 'end_time': it must be after 'start_time' (${startSeconds}), got ${endSeconds}.`);

  const widthRaw = scalar("bucket_width") ?? "1d";
  if (!(widthRaw in BUCKET_WIDTHS)) throw bad("bucket_width", `Invalid 'bucket_width': expected one of 1m, 1h, 1d, got '${widthRaw.slice(0, 40)}'.`);
  const width = widthRaw as BucketWidth;
  const widthSeconds = BUCKET_WIDTHS[width];

  const bounds = kind === "costs" ? COSTS_LIMITS : USAGE_LIMITS[width];
  const limitRaw = scalar("limit");
  const limit = limitRaw === null ? bounds.default : integer("limit", limitRaw);
  if (limit < 1 || limit > bounds.max) throw bad("limit", `Invalid 'limit': with bucket_width=${width} it must be between 1 and ${bounds.max}, got ${limit}.`);

  const pageRaw = scalar("page");
  let pageStartSeconds = startSeconds;
  if (pageRaw !== null) {
    const at = decodePage(pageRaw);
    if (at === null || at < startSeconds || at >= endSeconds || (at - startSeconds) % widthSeconds !== 0) {
      throw bad("page", "Invalid 'page': pass the 'next_page' of the previous page, with the same start_time, end_time and bucket_width.");
    }
    pageStartSeconds = at;
  }

  const groups = list("group_by") ?? [];
  for (const g of groups) {
    if (!GROUPS[kind].includes(g)) throw bad("group_by", `Invalid 'group_by': '${g.slice(0, 40)}' is not one of ${GROUPS[kind].join(", ")}.`);
  }

  const batchRaw = scalar("batch");
  if (batchRaw !== null && batchRaw !== "true" && batchRaw !== "false")
    throw bad("batch", `Invalid 'batch': expected true or false, got '${batchRaw.slice(0, 40)}'.`);
  const set = (name: string) => {
    const l = list(name);
    return l ? new Set(l) : null;
  };
  return {
    kind,
    startSeconds,
    endSeconds,
    width,
    pageStartSeconds,
    limit,
    groupBy: new Set(groups),
    projectIds: set("project_ids"),
    apiKeyIds: set("api_key_ids"),
    models: set("models"),
    batchIds: set("batch_ids"),
    batch: batchRaw === null ? null : batchRaw === "true",
  };
}

/** The opaque cursor of the page starting at `atSeconds`. */
export function encodePage(atSeconds: number): string {
  return `page_${Buffer.from(`v1:${atSeconds}`).toString("base64url")}`;
}

function decodePage(page: string): number | null {
  if (!page.startsWith("page_")) return null;
  const m = /^v1:(\d{1,15})$/.exec(Buffer.from(page.slice(5), "base64url").toString("utf8"));
  return m ? Number(m[1]) : null;
}

/** Whether a row passes the query's filters. */
function selected(q: ReportQuery, r: UsageRow): boolean {
  if (q.projectIds && !q.projectIds.has(r.tenantId)) return false;
  if (q.apiKeyIds && (r.apiKeyId === null || !q.apiKeyIds.has(r.apiKeyId))) return false;
  if (q.models && !q.models.has(r.model)) return false;
  if (q.batchIds && (r.batchId === null || !q.batchIds.has(r.batchId))) return false;
  if (q.batch !== null && (r.batchId !== null) !== q.batch) return false;
  return true;
}

/** USD of `tokens` at `price` (USD per million), by line item. */
export function costOf(
  price: ModelPrice | null,
  t: { inputTokens: number; cachedTokens: number; outputTokens: number },
): { input: number; cachedInput: number; output: number } {
  if (!price) return { input: 0, cachedInput: 0, output: 0 };
  return {
    input: ((t.inputTokens - t.cachedTokens) * price.input) / 1e6,
    cachedInput: (t.cachedTokens * price.cachedInput) / 1e6,
    output: (t.outputTokens * price.output) / 1e6,
  };
}

interface Sum {
  fields: Record<string, string | boolean | null>;
  requests: number;
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
  usd: number;
}

/** One page of the report from the rows the log returned for pageRange(q). */
export function reportPage(q: ReportQuery, rows: readonly UsageRow[]) {
  const { fromSeconds, widthSeconds, buckets } = pageRange(q);
  const perBucket: Array<Map<string, Sum>> = Array.from({ length: buckets }, () => new Map());
  const add = (
    bucket: number,
    fields: Sum["fields"],
    r: { requests: number; inputTokens: number; cachedTokens: number; outputTokens: number },
    usd: number,
  ) => {
    const key = JSON.stringify(fields);
    const groups = perBucket[bucket]!;
    let s = groups.get(key);
    if (!s) groups.set(key, (s = { fields, requests: 0, inputTokens: 0, cachedTokens: 0, outputTokens: 0, usd: 0 }));
    s.requests += r.requests;
    s.inputTokens += r.inputTokens;
    s.cachedTokens += r.cachedTokens;
    s.outputTokens += r.outputTokens;
    s.usd += usd;
  };
  const g = (name: string) => q.groupBy.has(name);
  for (const r of rows) {
    if (r.bucket < 0 || r.bucket >= buckets || !selected(q, r)) continue;
    const common = { project_id: g("project_id") ? r.tenantId : null, api_key_id: g("api_key_id") ? r.apiKeyId : null };
    if (q.kind === "costs") {
      const usd = costOf(r.price, r);
      if (!g("line_item")) {
        add(r.bucket, { ...common, line_item: null }, r, usd.input + usd.cachedInput + usd.output);
        continue;
      }
      add(r.bucket, { ...common, line_item: `${r.model}, input` }, r, usd.input);
      add(r.bucket, { ...common, line_item: `${r.model}, cached input` }, r, usd.cachedInput);
      add(r.bucket, { ...common, line_item: `${r.model}, output` }, r, usd.output);
      continue;
    }
    const fields: Sum["fields"] = { ...common, model: g("model") ? r.model : null };
    if (q.kind === "completions") {
      fields.batch = g("batch") ? r.batchId !== null : null;
      if (g("batch")) fields.batch_id = r.batchId;
    }
    add(r.bucket, fields, r, 0);
  }
  const data = perBucket.map((groups, i) => {
    const start = fromSeconds + i * widthSeconds;
    return {
      object: "bucket" as const,
      start_time: start,
      end_time: Math.min(start + widthSeconds, q.endSeconds),
      results: [...groups.values()].map((s) => result(q.kind, s)),
    };
  });
  const next = fromSeconds + buckets * widthSeconds;
  const hasMore = next < q.endSeconds;
  return { object: "page" as const, data, has_more: hasMore, next_page: hasMore ? encodePage(next) : null };
}

function result(kind: ReportKind, s: Sum) {
  if (kind === "costs") {
    return { object: "organization.costs.result", amount: { value: s.usd, currency: "usd" }, ...s.fields };
  }
  if (kind === "embeddings") {
    return { object: "organization.usage.embeddings.result", input_tokens: s.inputTokens, num_model_requests: s.requests, ...s.fields, user_id: null };
  }
  return {
    object: "organization.usage.completions.result",
    input_tokens: s.inputTokens,
    input_cached_tokens: s.cachedTokens,
    input_uncached_tokens: s.inputTokens - s.cachedTokens,
    output_tokens: s.outputTokens,
    input_audio_tokens: 0,
    output_audio_tokens: 0,
    num_model_requests: s.requests,
    ...s.fields,
    user_id: null,
    service_tier: null,
  };
}
