// Tenants and their keys: limits, usage (today's from the usage report, and
// this replica's counters since it started), and the key lifecycle (issue,
// rotate, revoke) through /admin. A new key is shown once, as the API returns it once.
import { api, NotAvailable } from "./api.js";
import { drawMeter } from "./charts.js";
import { h, replace } from "./dom.js";
import { compact, int, limit, utc } from "./format.js";
import { parsePrometheus, sumBy } from "./prometheus.js";
import { foldUsage, perTenant } from "./usage.js";

const LIMIT_FIELDS = [
  ["requestsPerMinute", "Requests / min"],
  ["tokensPerMinute", "Tokens / min"],
  ["tokensPerDay", "Tokens / day"],
  ["maxConcurrent", "Max concurrent"],
];

export function mountTenants(main) {
  const status = h("p", { class: "status", role: "status" });
  const table = h("div", {});
  const keysPanel = h("div", { id: "keys-panel" });
  let selected = null;

  const idInput = h("input", { name: "id", required: true, pattern: "[a-z0-9_\\-]{1,64}", placeholder: "acme", autocomplete: "off" });
  const limitInputs = LIMIT_FIELDS.map(([field, label]) => [
    field,
    h("input", { name: field, type: "number", min: 0, step: 1, placeholder: "no limit", "aria-label": label }),
    label,
  ]);
  const form = h(
    "form",
    { class: "inline-form", id: "create-tenant" },
    h("label", {}, "Tenant id ", idInput),
    limitInputs.map(([, input, label]) => h("label", {}, `${label} `, input)),
    h("button", { type: "submit" }, "Create tenant"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const limits = {};
    for (const [field, input] of limitInputs) if (input.value !== "") limits[field] = Number(input.value);
    try {
      const t = await api("/admin/tenants", { method: "POST", body: { id: idInput.value.trim(), ...(Object.keys(limits).length ? { limits } : {}) } });
      say(`Tenant ${t.id} created.`);
      form.reset();
      selected = t.id;
      await load();
    } catch (err) {
      say(err.message, true);
    }
  });

  const say = (text, error = false) => {
    status.textContent = text;
    status.className = error ? "status error" : "status";
  };

  const load = async () => {
    const [list, text, today] = await Promise.all([api("/admin/tenants"), api("/metrics").catch(() => ""), todayUsage()]);
    const samples = parsePrometheus(text);
    const prompt = sumBy(samples, "llamux_prompt_tokens_total", "tenant");
    const completion = sumBy(samples, "llamux_completion_tokens_total", "tenant");
    const rejected = sumBy(samples, "llamux_rejections_total", "tenant");
    replace(
      table,
      h(
        "table",
        { class: "grid-table", id: "tenants" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Tenant"),
            LIMIT_FIELDS.map(([, label]) => h("th", {}, label)),
            h("th", {}, "Tokens today"),
            h("th", {}, "Tokens since start"),
            h("th", {}, "Refused"),
            h("th", {}, "Scheduling"),
            h("th", {}),
          ),
        ),
        h(
          "tbody",
          {},
          list.data.length === 0 ? h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No tenants yet.")) : null,
          list.data.map((t) => {
            const used = today instanceof Map ? (today.get(t.id)?.tokens ?? 0) : null;
            return h(
              "tr",
              { class: t.id === selected ? "selected" : null, "data-tenant": t.id },
              h("td", {}, h("strong", {}, t.id), h("div", { class: "muted small" }, `since ${utc(t.created_at)}`)),
              LIMIT_FIELDS.map(([field]) => h("td", { class: "num" }, limit(t.limits[field]))),
              h(
                "td",
                { class: "num", "data-field": "tokens-today" },
                used === null
                  ? h("span", { class: "muted", title: "GET /admin/usage/completions is not available" }, "n/a")
                  : [compact(used), drawMeter(used, t.limits.tokensPerDay, { width: 80 })],
              ),
              h("td", { class: "num", "data-field": "tokens-since-start" }, int((prompt.get(t.id) ?? 0) + (completion.get(t.id) ?? 0))),
              h("td", { class: "num", "data-field": "refused" }, int(rejected.get(t.id) ?? 0)),
              h("td", { class: "small" }, `weight ${t.scheduling.weight}, reserved ${t.scheduling.reservedSlots}, max slots ${limit(t.scheduling.maxSlots)}`),
              h("td", {}, h("button", { type: "button", class: "small-button", onclick: () => select(t.id) }, "Keys")),
            );
          }),
        ),
      ),
      h(
        "p",
        { class: "muted small" },
        "Tokens today: the usage report since 00:00 UTC (all replicas). Tokens since start: this replica's /metrics counters. Refused: requests shed by quota, rate limits and queue caps.",
      ),
    );
    if (selected && list.data.some((t) => t.id === selected)) await showKeys(selected);
    else replace(keysPanel);
  };

  const select = async (id) => {
    selected = id;
    for (const row of table.querySelectorAll("tr[data-tenant]")) row.classList.toggle("selected", row.dataset.tenant === id);
    try {
      await showKeys(id);
    } catch (err) {
      say(err.message, true);
    }
  };

  const showKeys = async (tenantId, issued = null) => {
    const keys = await api(`/admin/tenants/${encodeURIComponent(tenantId)}/keys`);
    const nameInput = h("input", { name: "name", placeholder: "key name (optional)", autocomplete: "off" });
    const keyForm = h("form", { class: "inline-form", id: "create-key" }, h("label", {}, "Name ", nameInput), h("button", { type: "submit" }, "Create key"));
    keyForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const k = await api(`/admin/tenants/${encodeURIComponent(tenantId)}/keys`, {
          method: "POST",
          body: nameInput.value.trim() ? { name: nameInput.value.trim() } : {},
        });
        say(`Key ${k.id} issued for ${tenantId}.`);
        await showKeys(tenantId, k);
      } catch (err) {
        say(err.message, true);
      }
    });
    const action = (label, confirmLabel, run) =>
      confirmButton(label, confirmLabel, async () => {
        try {
          await run();
        } catch (err) {
          say(err.message, true);
        }
      });
    replace(
      keysPanel,
      h(
        "section",
        { class: "card", "data-keys-of": tenantId },
        h(
          "header",
          {},
          h("h3", {}, `Keys of ${tenantId}`),
          action("Delete tenant", `Delete ${tenantId} and its keys?`, async () => {
            await api(`/admin/tenants/${encodeURIComponent(tenantId)}`, { method: "DELETE" });
            say(`Tenant ${tenantId} deleted.`);
            selected = null;
            await load();
          }),
        ),
        issued
          ? h(
              "div",
              { class: "new-key", role: "alert" },
              h("p", {}, `New key ${issued.id} for ${tenantId}. Copy it now: it is not shown again.`),
              h("code", { id: "new-key", "data-key-id": issued.id }, issued.key),
            )
          : null,
        keyForm,
        h(
          "table",
          { class: "grid-table", id: "keys" },
          h(
            "thead",
            {},
            h("tr", {}, h("th", {}, "Key id"), h("th", {}, "Prefix"), h("th", {}, "Name"), h("th", {}, "Created"), h("th", {}, "Status"), h("th", {})),
          ),
          h(
            "tbody",
            {},
            keys.data.length === 0 ? h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No keys.")) : null,
            keys.data.map((k) =>
              h(
                "tr",
                { "data-key": k.id, class: k.revoked_at ? "revoked" : null },
                h("td", {}, h("code", {}, k.id)),
                h("td", {}, h("code", {}, k.prefix)),
                h("td", {}, k.name ?? ""),
                h("td", { class: "small" }, utc(k.created_at)),
                h("td", { "data-field": "status" }, k.revoked_at ? `revoked ${utc(k.revoked_at)}` : "active"),
                h(
                  "td",
                  { class: "actions" },
                  k.revoked_at
                    ? null
                    : [
                        action("Rotate", "Confirm rotate", async () => {
                          const n = await api(`/admin/tenants/${encodeURIComponent(tenantId)}/keys/${encodeURIComponent(k.id)}/rotate`, {
                            method: "POST",
                            body: {},
                          });
                          say(`Key ${k.id} rotated: ${n.id} replaces it.`);
                          await showKeys(tenantId, n);
                        }),
                        action("Revoke", "Confirm revoke", async () => {
                          await api(`/admin/tenants/${encodeURIComponent(tenantId)}/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
                          say(`Key ${k.id} revoked.`);
                          await showKeys(tenantId);
                        }),
                      ],
                ),
              ),
            ),
          ),
        ),
      ),
    );
  };

  replace(main, h("h2", {}, "Tenants"), form, status, table, keysPanel);
  load().catch((err) => say(err.message, true));
  return () => {};
}

/** Today's (UTC) tokens and requests per tenant from the usage report; null where the report is not available. */
async function todayUsage() {
  const midnight = Math.floor(Date.now() / 86_400_000) * 86_400;
  try {
    const page = await api(`/admin/usage/completions?start_time=${midnight}&bucket_width=1d&group_by=project_id`, { optional: true });
    return perTenant(foldUsage(page.data ?? []));
  } catch (err) {
    if (err instanceof NotAvailable) return null;
    throw err;
  }
}

/** A button that asks once more before it acts (a destructive action is two clicks, never a blocking dialog). */
function confirmButton(label, confirmLabel, run) {
  let armed = null;
  const button = h("button", { type: "button", class: "small-button" }, label);
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = confirmLabel;
      button.classList.add("danger");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("danger");
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    await run();
    button.disabled = false;
  });
  return button;
}
