// `node dist/bench/batch.js --model FILE`: the Batch API on idle capacity.
// One llamux process, four phases on it, each measured in the same run:
//   1. interactive alone: C closed-loop streaming clients for D seconds (TTFT);
//   2. closed loop alone: N requests through `slots` closed-loop clients (output tokens/s);
//   3. batch alone: the same N requests as one batch (output tokens/s);
//   4. batch + interactive: the batch of N again, with the C clients running until it ends (TTFT).
// Reports interactive TTFT p50/p99 with and without the batch (target: p50
// within 1.25x) and the batch's throughput against the closed loop's
// (target: >= 0.9), as JSON and a markdown table.
import { parseArgs } from "node:util";
import { runOne, requestBody, type LoadOptions, type RequestSample } from "./loadgen.js";
import { startLlamux } from "./llamuxProcess.js";
import { percentile } from "./stats.js";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    slots: { type: "string", default: "4" },
    "ctx-per-slot": { type: "string", default: "512" },
    threads: { type: "string" },
    interactive: { type: "string", default: "2" },
    "duration-s": { type: "string", default: "30" },
    requests: { type: "string", default: "500" },
    "prompt-tokens": { type: "string", default: "32" },
    "max-tokens": { type: "string", default: "64" },
    "interactive-max-tokens": { type: "string", default: "16" },
    json: { type: "string" },
  },
});
if (!values.model) {
  console.error(
    "usage: node dist/bench/batch.js --model FILE [--slots 4] [--interactive 2] [--duration-s 30] [--requests 500] [--max-tokens 64] [--threads N] [--json FILE]",
  );
  process.exit(2);
}
const num = (name: keyof typeof values) => Number(values[name]);
const slots = num("slots");
const N = num("requests");
const C = num("interactive");
const durationMs = num("duration-s") * 1000;

const srv = await startLlamux(values.model, [
  "--slots",
  String(slots),
  "--ctx-per-slot",
  values["ctx-per-slot"]!,
  ...(values.threads ? ["--threads", values.threads] : []),
  "--queue-timeout-ms",
  "0",
  "--max-queued",
  String(Math.max(64, N)),
]);
const base: Omit<LoadOptions, "concurrency" | "requests"> = {
  url: srv.url,
  model: srv.model,
  promptTokens: num("prompt-tokens"),
  maxTokens: num("max-tokens"),
  endpoint: "chat",
  ignoreEos: true,
  timeoutMs: 600_000,
};
let promptIndex = 1_000_000;

/** C closed-loop interactive clients until `stop` aborts (or durationMs passes when no signal is given). */
async function interactive(stop: AbortSignal): Promise<RequestSample[]> {
  const samples: RequestSample[] = [];
  const opts = { ...base, maxTokens: num("interactive-max-tokens"), concurrency: C, requests: Infinity };
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (!stop.aborted) {
        const s = await runOne({ ...opts, signal: stop }, promptIndex++);
        if (!s.aborted) samples.push(s);
      }
    }),
  );
  return samples;
}

async function closedLoop(n: number, firstIndex: number): Promise<{ seconds: number; tokens: number }> {
  let next = 0;
  let tokens = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: slots }, async () => {
      for (let i = next++; i < n; i = next++) {
        const s = await runOne({ ...base, concurrency: slots, requests: n }, firstIndex + i);
        if (s.ok) tokens += s.outputTokens;
      }
    }),
  );
  return { seconds: (performance.now() - t0) / 1000, tokens };
}

async function batch(n: number, firstIndex: number): Promise<{ seconds: number; tokens: number; status: string }> {
  const lines = Array.from({ length: n }, (_, i) => {
    // Batch bodies are not streamed.
    const { stream: _stream, stream_options: _options, ...body } = requestBody({ ...base, endpoint: "chat" }, firstIndex + i);
    return JSON.stringify({ custom_id: `r${i}`, method: "POST", url: "/v1/chat/completions", body });
  });
  const form = new FormData();
  form.append("purpose", "batch");
  form.append("file", new Blob([lines.join("\n")]), "bench.jsonl");
  const file = (await (await fetch(`${srv.url}/v1/files`, { method: "POST", body: form })).json()) as { id: string };
  const t0 = performance.now();
  const created = (await (
    await fetch(`${srv.url}/v1/batches`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" }),
    })
  ).json()) as { id: string };
  for (;;) {
    const b = (await (await fetch(`${srv.url}/v1/batches/${created.id}`)).json()) as { status: string; usage: { output_tokens: number }; errors: unknown };
    if (["completed", "failed", "cancelled", "expired"].includes(b.status)) {
      if (b.status !== "completed") console.error(JSON.stringify(b.errors));
      return { seconds: (performance.now() - t0) / 1000, tokens: b.usage.output_tokens, status: b.status };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ttft = (s: RequestSample[]) => {
  const ok = s.filter((x) => x.ok).map((x) => x.ttftMs);
  return { n: ok.length, errors: s.length - ok.length, p50: percentile(ok, 50), p99: percentile(ok, 99) };
};

try {
  // Warm-up: one request of each kind.
  await runOne({ ...base, concurrency: 1, requests: 1 }, 0);
  const phase = (name: string) => console.error(`${new Date().toISOString()} ${name}`);
  phase("interactive alone");
  const alone = ttft(await interactive(AbortSignal.timeout(durationMs)));
  phase("closed loop");
  const loop = await closedLoop(N, 10_000);
  phase("batch alone");
  const batchAlone = await batch(N, 20_000);
  phase("batch with interactive clients");
  const stop = new AbortController();
  const mixedSamples = interactive(stop.signal);
  const batchMixed = await batch(N, 30_000);
  stop.abort();
  const mixed = ttft(await mixedSamples);
  const result = {
    model: srv.model,
    slots,
    interactiveClients: C,
    batchRequests: N,
    maxTokens: base.maxTokens,
    interactiveAlone: alone,
    interactiveWithBatch: mixed,
    ttftP50Ratio: mixed.p50 / alone.p50,
    closedLoopTokensPerSecond: loop.tokens / loop.seconds,
    batchAloneTokensPerSecond: batchAlone.tokens / batchAlone.seconds,
    batchWithInteractiveTokensPerSecond: batchMixed.tokens / batchMixed.seconds,
    batchVsClosedLoop: batchAlone.tokens / batchAlone.seconds / (loop.tokens / loop.seconds),
  };
  console.log(JSON.stringify(result, null, 2));
  const f = (x: number) => x.toFixed(1);
  console.log(`
| | TTFT p50 (ms) | TTFT p99 (ms) | requests |
| --- | --- | --- | --- |
| interactive alone | ${f(alone.p50)} | ${f(alone.p99)} | ${alone.n} |
| interactive + batch of ${N} | ${f(mixed.p50)} | ${f(mixed.p99)} | ${mixed.n} |

p50 ratio ${mixed.p50 / alone.p50 > 0 ? (mixed.p50 / alone.p50).toFixed(2) : "n/a"}x (target <= 1.25x)

| output tokens/s | |
| --- | --- |
| closed loop, ${slots} clients, no interactive | ${f(result.closedLoopTokensPerSecond)} |
| batch alone | ${f(result.batchAloneTokensPerSecond)} (${result.batchVsClosedLoop.toFixed(2)}x of closed loop; target >= 0.9) |
| batch with interactive clients | ${f(result.batchWithInteractiveTokensPerSecond)} |
`);
  if (values.json) (await import("node:fs")).writeFileSync(values.json, JSON.stringify(result, null, 2));
} finally {
  await srv.stop();
}
