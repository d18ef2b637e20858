// The audit log (GET /admin/audit, OpenAI's audit log shape), newest first,
// a page at a time.
import { api, NotAvailable } from "./api.js";
import { h, replace } from "./dom.js";
import { utc } from "./format.js";

const PAGE = 50;

export function mountAudit(main) {
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "small-button", hidden: true }, "Older events");
  const area = h("div", {});
  let lastId = null;

  const load = async () => {
    let page;
    try {
      page = await api(`/admin/audit?limit=${PAGE}${lastId ? `&after=${encodeURIComponent(lastId)}` : ""}`, { optional: true });
    } catch (err) {
      replace(
        area,
        err instanceof NotAvailable
          ? h("p", { class: "unavailable" }, "Not available: this server does not serve GET /admin/audit.")
          : h("p", { class: "status error" }, err.message),
      );
      return;
    }
    if (!lastId && page.data.length === 0) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No audit events yet.")));
    for (const e of page.data) {
      body.append(
        h(
          "tr",
          { "data-event": e.id, "data-type": e.type },
          h("td", { class: "small" }, utc(e.effective_at)),
          h("td", {}, h("code", {}, e.type)),
          h("td", { class: "small" }, actorText(e.actor)),
          h("td", { class: "small details" }, detailsText(e)),
        ),
      );
    }
    lastId = page.last_id ?? lastId;
    more.hidden = !page.has_more;
  };
  more.addEventListener("click", () => load());

  replace(
    area,
    h(
      "table",
      { class: "grid-table", id: "audit" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Time", "Event", "Actor", "Details"].map((x) => h("th", {}, x)),
        ),
      ),
      body,
    ),
    more,
  );
  replace(main, h("h2", {}, "Audit log"), area);
  load();
  return () => {};
}

function actorText(actor) {
  if (!actor) return "—";
  const rest = Object.entries(actor)
    .filter(([k]) => k !== "type")
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  return [actor.type, ...rest].join(" · ");
}

/** Everything an event carries beyond the common fields, as compact JSON. */
function detailsText(e) {
  const { id: _i, type: _t, effective_at: _e, actor: _a, object: _o, ...rest } = e;
  const text = JSON.stringify(rest);
  return text === "{}" ? "" : text;
}
