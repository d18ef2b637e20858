// Usage and costs over time, from GET /admin/usage/completions and GET
// /admin/costs (OpenAI's organization usage and costs shapes): tokens and
// requests per bucket as stacked bars, totals per tenant and model, and cost
// per day per tenant. A server without those reports says so.
import { allPages, NotAvailable } from "./api.js";
import { drawLegend, drawStackedBars } from "./charts.js";
import { h, replace } from "./dom.js";
import { bucketLabel, compact, int, usd } from "./format.js";
import { foldCosts, foldUsage, RANGES, startTime } from "./usage.js";

const TOKEN_SERIES = [
  { key: "uncached", label: "Input (computed)" },
  { key: "cached", label: "Input (cached)" },
  { key: "output", label: "Output" },
];

export function mountUsage(main) {
  let width = "1h";
  const tokens = h("section", { class: "card", id: "usage-tokens" });
  const requests = h("section", { class: "card", id: "usage-requests" });
  const totals = h("section", { class: "card", id: "usage-totals" });
  const costs = h("section", { class: "card", id: "costs" });
  const buttons = Object.entries(RANGES).map(([w, r]) =>
    h(
      "button",
      { type: "button", class: w === width ? "small-button active" : "small-button", "data-width": w, onclick: () => ((width = w), load()) },
      r.label,
    ),
  );
  const refresh = h("button", { type: "button", class: "small-button", id: "usage-refresh", onclick: () => load() }, "Refresh");

  const load = async () => {
    for (const b of buttons) b.classList.toggle("active", b.dataset.width === width);
    const now = Math.floor(Date.now() / 1000);
    await Promise.all([loadUsage(now), loadCosts(now)]);
  };

  const loadUsage = async (now) => {
    let data;
    try {
      data = await allPages(`/admin/usage/completions?start_time=${startTime(width, now)}&bucket_width=${width}&group_by=project_id,model`);
    } catch (err) {
      for (const [el, title] of [
        [tokens, "Tokens"],
        [requests, "Requests by tenant"],
        [totals, "Totals"],
      ])
        replace(el, h("h3", {}, title), unavailable(err, "GET /admin/usage/completions"));
      return;
    }
    const folded = foldUsage(data);
    const buckets = folded.buckets.map((b) => ({ label: bucketLabel(b.start, width), values: b.values }));
    replace(
      tokens,
      h("h3", {}, `Tokens, ${RANGES[width].label.toLowerCase()}`),
      drawLegend(TOKEN_SERIES),
      drawStackedBars(buckets, TOKEN_SERIES, { format: compact, title: "Tokens per bucket" }),
    );
    const tenantSeries = folded.tenants.map((t) => ({ key: t, label: t }));
    replace(
      requests,
      h("h3", {}, "Requests by tenant"),
      tenantSeries.length ? drawLegend(tenantSeries) : null,
      drawStackedBars(
        folded.buckets.map((b) => ({ label: bucketLabel(b.start, width), values: b.byTenant })),
        tenantSeries,
        { format: compact, title: "Requests per bucket by tenant" },
      ),
    );
    replace(
      totals,
      h("h3", {}, "Totals by tenant and model"),
      h(
        "table",
        { class: "grid-table", id: "usage-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Tenant", "Model", "Requests", "Input tokens", "Cached input", "Output tokens"].map((x) => h("th", {}, x)),
          ),
        ),
        h(
          "tbody",
          {},
          folded.totals.length === 0 ? h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No requests in this range.")) : null,
          folded.totals.map((t) =>
            h(
              "tr",
              { "data-tenant": t.tenant, "data-model": t.model },
              h("td", {}, t.tenant),
              h("td", {}, t.model),
              h("td", { class: "num", "data-field": "requests" }, int(t.requests)),
              h("td", { class: "num", "data-field": "input" }, int(t.input)),
              h("td", { class: "num", "data-field": "cached" }, int(t.cached)),
              h("td", { class: "num", "data-field": "output" }, int(t.output)),
            ),
          ),
        ),
      ),
    );
  };

  const loadCosts = async (now) => {
    let data;
    try {
      data = await allPages(`/admin/costs?start_time=${startTime("1d", now)}&bucket_width=1d&group_by=project_id`);
    } catch (err) {
      replace(costs, h("h3", {}, "Costs"), unavailable(err, "GET /admin/costs"));
      return;
    }
    const folded = foldCosts(data);
    const series = folded.tenants.map((t) => ({ key: t, label: t }));
    replace(
      costs,
      h("h3", {}, `Costs, last 7 days: ${usd(folded.total)} ${folded.currency.toUpperCase()}`),
      series.length ? drawLegend(series) : null,
      drawStackedBars(
        folded.buckets.map((b) => ({ label: bucketLabel(b.start, "1d"), values: b.values })),
        series,
        { format: usd, title: "Cost per day by tenant" },
      ),
    );
  };

  replace(main, h("h2", {}, "Usage and costs"), h("div", { class: "toolbar" }, buttons, refresh), tokens, requests, totals, costs);
  load();
  return () => {};
}

function unavailable(err, what) {
  if (err instanceof NotAvailable) return h("p", { class: "unavailable" }, `Not available: this server does not serve ${what}.`);
  return h("p", { class: "status error" }, err.message);
}
