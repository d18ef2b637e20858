// n > 1 vs n = 1: one n=4 completion against four concurrent n=1 ones with the
// same fresh 400-token prompt, 32 tokens per choice; first token, every
// choice's first token, total time and prompt tokens the engine evaluated.
//   Usage (repository root): npm run build && RUNS=3 node bench/features/choices.mjs
import { createParser } from "eventsource-parser";
import { startTestServer } from "../../dist/test/integration/helpers/server.js";
const MODEL = process.env.MODEL ?? "models/bench.gguf";
const RUNS = Number(process.env.RUNS ?? 5);
const PROMPT = 400, OUT = 32, N = 4;
const t = await startTestServer(["--model", MODEL, "--slots", "4", "--ctx-per-slot", "1024"]);
const vocab = t.srv.model.vocabSize;

async function stream(body, t0) {
  const res = await fetch(`${t.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...body, stream: true }) });
  const firsts = new Map();
  const parser = createParser({ onEvent: (e) => {
    if (e.data === "[DONE]") return;
    const c = JSON.parse(e.data);
    for (const ch of c.choices) if (ch.text && !firsts.has(ch.index)) firsts.set(ch.index, performance.now() - t0);
  } });
  const dec = new TextDecoder();
  for await (const chunk of res.body) parser.feed(dec.decode(chunk, { stream: true }));
  return { firsts: [...firsts.values()], doneMs: performance.now() - t0 };
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const rows = { fork: [], solo: [] };
for (let run = 0; run < RUNS + 1; run++) {
  for (const mode of run % 2 ? ["fork", "solo"] : ["solo", "fork"]) {
    // A fresh random prompt every time: no slot holds it yet.
    const prompt = Array.from({ length: PROMPT }, () => 10 + Math.floor(Math.random() * (vocab - 10)));
    const body = { model: t.modelId, prompt, max_tokens: OUT, ignore_eos: true, temperature: 1 };
    const s0 = await t.srv.engine.stats();
    const t0 = performance.now();
    const outs = mode === "fork" ? [await stream({ ...body, n: N }, t0)] : await Promise.all(Array.from({ length: N }, () => stream(body, t0)));
    const s1 = await t.srv.engine.stats();
    const firsts = outs.flatMap((o) => o.firsts);
    const r = { firstTokenMs: Math.min(...firsts), allFirstTokensMs: Math.max(...firsts), totalMs: Math.max(...outs.map((o) => o.doneMs)), prefilled: s1.prefilledTokens - s0.prefilledTokens };
    if (run > 0) rows[mode].push(r); // run 0 warms up
    console.log(run, mode, JSON.stringify(r, (k, v) => (typeof v === "number" ? Math.round(v) : v)));
  }
}
for (const mode of ["fork", "solo"]) {
  const m = (k) => Math.round(median(rows[mode].map((r) => r[k])));
  console.log(`${mode === "fork" ? "one n=4 request " : "four n=1 requests"}: median first token ${m("firstTokenMs")} ms, every choice's first token ${m("allFirstTokensMs")} ms, total ${m("totalMs")} ms, prefilled ${m("prefilled")} tokens`);
}
await t.close();
