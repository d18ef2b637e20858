// Decode throughput with and without logprobs: 4 concurrent completions of 64
// tokens (ignore_eos, temperature 1), configurations alternating per round; a
// round while another llama.cpp worker runs on the machine is redone.
//   Usage (repository root): npm run build && node bench/features/logprobs.mjs models/bench.gguf 5
import { execSync } from "node:child_process";
import { startTestServer } from "../../dist/test/integration/helpers/server.js";
const modelPath = process.argv[2];
const rounds = Number(process.argv[3] ?? 7);
const t = await startTestServer(["--model", modelPath, "--slots", "4", "--ctx-per-slot", "256"]);
const workers = () => Number(execSync("ps -eo args | grep -c '[w]orker.js' || true").toString().trim());
const configs = { none: {}, "logprobs 0": { logprobs: 0 }, "logprobs 5": { logprobs: 5 } };
const results = Object.fromEntries(Object.keys(configs).map((k) => [k, []]));
const run = async (extra, seed) => {
  const t0 = performance.now();
  const rs = await Promise.all([0, 1, 2, 3].map((i) =>
    fetch(`${t.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, prompt: `Once upon a time ${i}`, max_tokens: 64, temperature: 1, seed: seed + i, ignore_eos: true, ...extra }) }).then((r) => r.json())));
  const ms = performance.now() - t0;
  return (rs.reduce((n, r) => n + r.usage.completion_tokens, 0) / ms) * 1000;
};
try {
  await run({}, 0);
  let discarded = 0;
  for (let r = 0; r < rounds; r++) for (const [name, extra] of Object.entries(configs)) {
    for (;;) {
      while (workers() > 1 || Number(execSync("cut -d' ' -f1 /proc/loadavg").toString()) > 1.5) await new Promise((res) => setTimeout(res, 2000));
      const v = await run(extra, 100 * r);
      if (workers() > 1) { discarded++; continue; }
      results[name].push(v);
      console.log(`round ${r} ${name}: ${v.toFixed(1)} tok/s`);
      break;
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [name, xs] of Object.entries(results)) console.log(`${name}: median ${median(xs).toFixed(1)} tok/s  (${xs.map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`discarded ${discarded}`);
} finally { await t.close(); }
