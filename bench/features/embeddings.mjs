// Embeddings per second, 1 vs 8 concurrent clients, one short input per request,
// on stories260K; medians of 5 runs of 3 s each.
//   Usage (repository root): npm run build && THREADS=1 node bench/features/embeddings.mjs
import { startTestServer, MODELS } from "../../dist/test/integration/helpers/server.js";
const t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256", ...(process.env.THREADS ? ["--threads", process.env.THREADS] : [])]);
const post = (input) => fetch(`${t.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: t.modelId, input, encoding_format: "base64" }) }).then(async (r) => { if (r.status !== 200) throw new Error(await r.text()); await r.arrayBuffer(); });
async function run(clients, seconds) {
  let n = 0; const end = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: clients }, async (_, c) => { let i = 0; while (performance.now() < end) { await post(`Once upon a time ${c} ${i++}`); n++; } }));
  return n / seconds;
}
try {
  await run(2, 1); // warm up: the embedding context is created on the first request
  const res = { 1: [], 8: [] };
  for (let r = 0; r < 5; r++) for (const c of [1, 8]) res[c].push(await run(c, 3));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const c of [1, 8]) console.log(`${c} client(s): median ${median(res[c]).toFixed(0)} embeddings/s (runs: ${res[c].map((x) => x.toFixed(0)).join(", ")})`);
} finally { await t.close(); }
