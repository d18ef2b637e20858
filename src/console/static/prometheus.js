// The Prometheus text exposition format, read back into samples: enough of it
// for /metrics as prom-client writes it (names, labels with escapes, values,
// optional timestamps). Pure: no DOM, unit-tested under node.

/** "name{a=\"x\"} 1.5" lines → [{ name, labels: {a: "x"}, value: 1.5 }]; comments and blank lines skipped. */
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const sample = parseLine(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

function parseLine(line) {
  const nameEnd = line.search(/[{\s]/);
  if (nameEnd <= 0) return null;
  const name = line.slice(0, nameEnd);
  const labels = {};
  let i = nameEnd;
  if (line[i] === "{") {
    i++;
    while (i < line.length && line[i] !== "}") {
      const eq = line.indexOf("=", i);
      if (eq < 0 || line[eq + 1] !== '"') return null;
      const key = line.slice(i, eq).trim();
      let value = "";
      let j = eq + 2;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === "\\" && j + 1 < line.length) {
          j++;
          value += line[j] === "n" ? "\n" : line[j];
        } else value += line[j];
      }
      if (j >= line.length) return null;
      labels[key] = value;
      i = j + 1;
      while (line[i] === "," || line[i] === " ") i++;
    }
    if (line[i] !== "}") return null;
    i++;
  }
  const [valueText] = line.slice(i).trim().split(/\s+/);
  const value = parseValue(valueText);
  return value === null ? null : { name, labels, value };
}

function parseValue(text) {
  if (text === undefined || text === "") return null;
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const v = Number(text);
  return Number.isNaN(v) ? null : v;
}

/** Sum of the samples called `name`, grouped by the value of label `by` (a Map label value → sum). */
export function sumBy(samples, name, by) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== name) continue;
    const key = s.labels[by] ?? "";
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

/**
 * Per-second rates between two readings of the same counters (a Map each,
 * as sumBy gives), over `seconds`. A counter that went down (a restarted
 * worker starts from 0) counts from 0, as Prometheus' rate() does.
 */
export function rates(before, after, seconds) {
  const out = new Map();
  if (!(seconds > 0)) return out;
  for (const [key, now] of after) {
    const then = before.get(key) ?? 0;
    out.set(key, (now >= then ? now - then : now) / seconds);
  }
  return out;
}
