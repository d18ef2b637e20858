// Usage and cost reports (OpenAI's organization usage and costs shapes) folded
// into what the charts draw. Pure: unit-tested under node.
//
// OpenAI's input_tokens include the cached ones (input_cached_tokens is a part
// of them), so the charts stack uncached input, cached input and output.

/** The report's range for a bucket width: the last hour by minute, the last day by hour, the last week by day. */
export const RANGES = {
  "1m": { seconds: 3600, label: "Last hour" },
  "1h": { seconds: 86400, label: "Last 24 hours" },
  "1d": { seconds: 7 * 86400, label: "Last 7 days" },
};

const WIDTH_SECONDS = { "1m": 60, "1h": 3600, "1d": 86400 };

/** start_time for a report of `width` buckets ending now: aligned down to the bucket width (UTC). */
export function startTime(width, nowSeconds) {
  const w = WIDTH_SECONDS[width];
  return Math.floor((nowSeconds - RANGES[width].seconds) / w) * w + w;
}

/**
 * Completions usage buckets → { buckets: [{ start, end, values: {uncached, cached, output, requests}, byTenant: {id: requests} }],
 * totals: [{ tenant, model, input, cached, output, requests }] (largest first), tenants: [ids] }.
 */
export function foldUsage(data) {
  const totals = new Map();
  const tenants = new Set();
  const buckets = [...data]
    .sort((a, b) => a.start_time - b.start_time)
    .map((b) => {
      const values = { uncached: 0, cached: 0, output: 0, requests: 0 };
      const byTenant = {};
      for (const r of b.results ?? []) {
        const input = r.input_tokens ?? 0;
        const cached = r.input_cached_tokens ?? 0;
        const output = r.output_tokens ?? 0;
        const requests = r.num_model_requests ?? 0;
        values.uncached += Math.max(0, input - cached);
        values.cached += cached;
        values.output += output;
        values.requests += requests;
        const tenant = r.project_id ?? "(all)";
        tenants.add(tenant);
        byTenant[tenant] = (byTenant[tenant] ?? 0) + requests;
        const key = `${tenant}\u0000${r.model ?? "(all)"}`;
        const t = totals.get(key) ?? { tenant, model: r.model ?? "(all)", input: 0, cached: 0, output: 0, requests: 0 };
        t.input += input;
        t.cached += cached;
        t.output += output;
        t.requests += requests;
        totals.set(key, t);
      }
      return { start: b.start_time, end: b.end_time, values, byTenant };
    });
  return {
    buckets,
    totals: [...totals.values()].sort((a, b) => b.input + b.output - (a.input + a.output) || a.tenant.localeCompare(b.tenant)),
    tenants: [...tenants].sort(),
  };
}

/** Cost buckets → { buckets: [{ start, end, values: {tenant: usd} }], tenants, total, currency }. */
export function foldCosts(data) {
  const tenants = new Set();
  let total = 0;
  let currency = "usd";
  const buckets = [...data]
    .sort((a, b) => a.start_time - b.start_time)
    .map((b) => {
      const values = {};
      for (const r of b.results ?? []) {
        const tenant = r.project_id ?? "(all)";
        const value = Number(r.amount?.value ?? 0);
        currency = r.amount?.currency ?? currency;
        tenants.add(tenant);
        values[tenant] = (values[tenant] ?? 0) + value;
        total += value;
      }
      return { start: b.start_time, end: b.end_time, values };
    });
  return { buckets, tenants: [...tenants].sort(), total, currency };
}

/** Tokens and requests per tenant over the report (a Map tenant → {tokens, requests}). */
export function perTenant(folded) {
  const out = new Map();
  for (const t of folded.totals) {
    const x = out.get(t.tenant) ?? { tokens: 0, requests: 0 };
    x.tokens += t.input + t.output;
    x.requests += t.requests;
    out.set(t.tenant, x);
  }
  return out;
}
