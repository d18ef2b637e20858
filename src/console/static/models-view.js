// Models: each served model's state, its KV slots, and live queue and
// throughput, from /ready and /metrics polled every two seconds. Rates are
// computed here between two scrapes, as Prometheus' rate() would.
import { api } from "./api.js";
import { drawSlots, drawSparkline } from "./charts.js";
import { h, replace } from "./dom.js";
import { compact, int } from "./format.js";
import { parsePrometheus, rates, sumBy } from "./prometheus.js";

const POLL_MS = 2000;
const HISTORY = 60;

export function mountModels(main) {
  const cards = h("div", { class: "cards" });
  const note = h("p", { class: "muted" }, "Live from /ready and /metrics, every 2 s.");
  replace(main, h("h2", {}, "Models"), note, cards);
  const history = new Map();
  let last = null;
  let timer = null;
  let stopped = false;

  const tick = async () => {
    try {
      const [ready, text] = await Promise.all([api("/ready", { accept: [503] }), api("/metrics")]);
      if (stopped) return;
      const samples = parsePrometheus(text);
      const at = performance.now() / 1000;
      const output = sumBy(samples, "llamux_completion_tokens_total", "model");
      const prompt = sumBy(samples, "llamux_prompt_tokens_total", "model");
      const previous = last;
      const outRates = previous ? rates(previous.output, output, at - previous.at) : new Map();
      last = { at, output };
      const gauge = (name) => sumBy(samples, name, "model");
      const busy = gauge("llamux_slots_busy");
      const idle = gauge("llamux_slots_idle");
      const running = gauge("llamux_requests_running");
      const waiting = gauge("llamux_requests_waiting");
      const kv = gauge("llamux_kv_cache_usage_ratio");
      const restarts = gauge("llamux_engine_restarts_total");
      const ids = [...new Set([...Object.keys(ready.models ?? {}), ...busy.keys()])].sort();
      replace(
        cards,
        ids.length === 0 ? h("p", { class: "muted" }, "No models are served.") : null,
        ids.map((id) => {
          const hist = history.get(id) ?? { tps: [], waiting: [] };
          history.set(id, hist);
          if (previous) push(hist.tps, outRates.get(id) ?? 0);
          push(hist.waiting, waiting.get(id) ?? 0);
          const state = ready.models?.[id] ?? "unknown";
          const total = (busy.get(id) ?? 0) + (idle.get(id) ?? 0);
          return h(
            "section",
            { class: "card model", "data-model": id },
            h("header", {}, h("h3", {}, id), h("span", { class: `badge state-${state}` }, state)),
            h(
              "div",
              { class: "slots-row" },
              total > 0 ? drawSlots(busy.get(id) ?? 0, idle.get(id) ?? 0) : h("span", { class: "muted" }, "no slots reported"),
              h("span", { class: "muted" }, `${int(busy.get(id) ?? 0)} of ${int(total)} slots busy`),
            ),
            h(
              "dl",
              { class: "stats" },
              stat("Running", int(running.get(id) ?? 0)),
              stat("Waiting", int(waiting.get(id) ?? 0)),
              stat("KV cache in use", kv.has(id) ? `${Math.round(kv.get(id) * 100)}%` : "—"),
              stat("Prompt tokens", int(prompt.get(id) ?? 0)),
              stat("Output tokens", int(output.get(id) ?? 0)),
              stat("Restarts", int(restarts.get(id) ?? 0)),
            ),
            h(
              "div",
              { class: "sparks" },
              h(
                "figure",
                {},
                drawSparkline(hist.tps, { label: `${id} output tokens per second` }),
                h("figcaption", {}, `Output tokens/s: ${hist.tps.length ? compact(hist.tps[hist.tps.length - 1]) : "…"}`),
              ),
              h(
                "figure",
                {},
                drawSparkline(hist.waiting, { label: `${id} requests waiting`, max: Math.max(1, ...hist.waiting) }),
                h("figcaption", {}, `Queue: ${int(waiting.get(id) ?? 0)} waiting`),
              ),
            ),
          );
        }),
      );
      note.textContent = `Live from /ready and /metrics, every 2 s. Server: ${ready.status}.`;
    } catch (err) {
      if (!stopped) note.textContent = `Could not read the metrics: ${err.message}`;
    } finally {
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function push(list, v) {
  list.push(v);
  if (list.length > HISTORY) list.shift();
}

const stat = (label, value) => h("div", {}, h("dt", {}, label), h("dd", { "data-field": label.toLowerCase().replaceAll(" ", "-") }, value));
