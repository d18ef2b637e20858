// What /metrics says about real generations: every choice is counted once in
// llamux_generations_total with the status and finish_reason the client saw
// (cancelled and refused ones too), and each finished one adds its prefill
// time to llamux_prefill_seconds.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createParser } from "eventsource-parser";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";
import { parseMetrics, scrape, sumOf, type Sample } from "../helpers/metrics.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256"]);
});
after(async () => {
  await t?.close();
});

// Requests without a key run as the anonymous tenant.
const TENANT = "default";
const generations = (s: Sample[], status: string, finishReason: string) =>
  sumOf(s, "llamux_generations_total", { model: t.modelId, tenant: TENANT, status, finish_reason: finishReason });
const allGenerations = (s: Sample[]) => sumOf(s, "llamux_generations_total");

describe("generation metrics", () => {
  test("a non-streamed chat cut by max_tokens counts once as ok/length, its prefill inside its TTFT", async () => {
    const before = await scrape(t.url);
    const r = await t.client.chat.completions.create({
      model: t.modelId,
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 3,
      ignore_eos: true,
    } as never);
    assert.equal(r.choices[0]!.finish_reason, "length");
    const after = await scrape(t.url);
    assert.equal(generations(after, "ok", "length") - generations(before, "ok", "length"), 1);
    assert.equal(allGenerations(after) - allGenerations(before), 1, "nothing else counted");
    const model = { model: t.modelId };
    assert.equal(sumOf(after, "llamux_prefill_seconds_count", model) - sumOf(before, "llamux_prefill_seconds_count", model), 1);
    const prefill = sumOf(after, "llamux_prefill_seconds_sum", model) - sumOf(before, "llamux_prefill_seconds_sum", model);
    const ttft = sumOf(after, "llamux_time_to_first_token_seconds_sum", model) - sumOf(before, "llamux_time_to_first_token_seconds_sum", model);
    assert.ok(prefill > 0, "the prompt took some time to read");
    // Admission comes after arrival and the first token is sampled before the front sees it.
    assert.ok(prefill < ttft, `prefill ${prefill}s within TTFT ${ttft}s`);
    // The largest bucket holds every observation (buckets are cumulative).
    assert.equal(sumOf(after, "llamux_prefill_seconds_bucket", { ...model, le: "+Inf" }), sumOf(after, "llamux_prefill_seconds_count", model));
  });

  test("the GenAI semantic conventions' server metrics: one observation each per successful generation, under their names and labels", async () => {
    const before = await scrape(t.url);
    const r = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 5, ignore_eos: true } as never);
    assert.equal(r.usage!.completion_tokens, 5);
    const after = await scrape(t.url);
    const labels = { gen_ai_operation_name: "text_completion", gen_ai_request_model: t.modelId };
    const delta = (name: string, l: Record<string, string> = labels) => sumOf(after, name, l) - sumOf(before, name, l);
    assert.equal(delta("gen_ai_server_time_to_first_token_seconds_count"), 1);
    assert.equal(delta("gen_ai_server_time_per_output_token_seconds_count"), 1);
    assert.equal(delta("gen_ai_server_request_duration_seconds_count", { ...labels, error_type: "" }), 1);
    const ttft = delta("gen_ai_server_time_to_first_token_seconds_sum");
    const duration = delta("gen_ai_server_request_duration_seconds_sum", { ...labels, error_type: "" });
    const perToken = delta("gen_ai_server_time_per_output_token_seconds_sum");
    assert.ok(ttft > 0 && ttft <= duration, `TTFT ${ttft}s within the duration ${duration}s`);
    // Four tokens after the first, in the time after the first.
    assert.ok(Math.abs(perToken * 4 - (duration - ttft)) < 0.05 + (duration - ttft) * 0.5, `per-token ${perToken}s × 4 ≈ ${duration - ttft}s`);
  });

  test("a streamed completion that hits its stop string counts as ok/stop", async () => {
    const before = await scrape(t.url);
    const stream = await t.client.completions.create({
      model: t.modelId,
      prompt: "Once upon a time",
      max_tokens: 200,
      temperature: 0,
      stop: ["."],
      stream: true,
    });
    const finishes: string[] = [];
    for await (const chunk of stream) {
      for (const c of chunk.choices) if (c.finish_reason) finishes.push(c.finish_reason);
    }
    assert.deepEqual(finishes, ["stop"]);
    const after = await scrape(t.url);
    assert.equal(generations(after, "ok", "stop") - generations(before, "ok", "stop"), 1);
    assert.equal(allGenerations(after) - allGenerations(before), 1);
    assert.equal(sumOf(after, "llamux_prefill_seconds_count") - sumOf(before, "llamux_prefill_seconds_count"), 1);
  });

  test("a completion of two prompts counts two generations and two prefills", async () => {
    const before = await scrape(t.url);
    const r = await t.client.completions.create({ model: t.modelId, prompt: ["Once upon a time", "The dog"], max_tokens: 2, ignore_eos: true } as never);
    assert.deepEqual(
      r.choices.map((c) => c.finish_reason),
      ["length", "length"],
    );
    const after = await scrape(t.url);
    assert.equal(generations(after, "ok", "length") - generations(before, "ok", "length"), 2);
    assert.equal(sumOf(after, "llamux_prefill_seconds_count") - sumOf(before, "llamux_prefill_seconds_count"), 2);
  });

  test("a client that leaves mid-stream counts as cancelled, with no finish", async () => {
    const before = await scrape(t.url);
    const ac = new AbortController();
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 200, ignore_eos: true, stream: true }),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    // Leave once a content chunk has arrived: the request is generating.
    let contentChunks = 0;
    const parser = createParser({ onEvent: (e) => (contentChunks += e.data.includes('"content":"') && !e.data.includes('"content":""') ? 1 : 0) });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    while (contentChunks === 0) {
      const { value, done } = await reader.read();
      assert.ok(!done, "the stream ended before any content");
      parser.feed(decoder.decode(value, { stream: true }));
    }
    ac.abort();
    await reader.cancel().catch(() => undefined);
    let now: Sample[] = before;
    await waitFor(
      async () => generations((now = await scrape(t.url)), "cancelled", "none") - generations(before, "cancelled", "none") === 1,
      10_000,
      "the cancel to be counted",
    );
    assert.equal(allGenerations(now) - allGenerations(before), 1, "counted once, not also as ok");
    // The slot is free again: the cancel reached the engine.
    await waitFor(async () => sumOf(await scrape(t.url), "llamux_requests_running") === 0, 10_000, "the slot to be released");
  });

  test("a prompt the engine refuses counts as an error", async () => {
    const before = await scrape(t.url);
    const res = await fetch(`${t.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, prompt: Array.from({ length: 300 }, () => 100), max_tokens: 5 }),
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "context_length_exceeded");
    const after = await scrape(t.url);
    assert.equal(generations(after, "error", "none") - generations(before, "error", "none"), 1);
    assert.equal(allGenerations(after) - allGenerations(before), 1);
  });
});

describe("engine loop metrics", () => {
  const PHASES = ["wait", "admit", "step", "emit"];
  const loopSeconds = (s: Sample[], phase: string) => sumOf(s, "llamux_engine_loop_seconds_total", { model: t.modelId, phase });

  test("a generation's steps are counted, and its time is booked by phase, never more than the time that passed", async () => {
    const before = await scrape(t.url);
    const started = performance.now();
    const r = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 8, ignore_eos: true } as never);
    const elapsed = (performance.now() - started) / 1000;
    const after = await scrape(t.url);
    assert.equal(r.usage?.completion_tokens, 8);
    // The step that reads the prompt samples the first token; each of the other 7 takes a step of its own.
    const steps = sumOf(after, "llamux_engine_steps_total", { model: t.modelId }) - sumOf(before, "llamux_engine_steps_total", { model: t.modelId });
    assert.equal(steps, 8);
    for (const phase of PHASES) {
      assert.equal(after.filter((s) => s.name === "llamux_engine_loop_seconds_total" && s.labels.phase === phase).length, 1, `one ${phase} series`);
    }
    const spent = Object.fromEntries(PHASES.map((p) => [p, loopSeconds(after, p) - loopSeconds(before, p)]));
    assert.ok(spent.step! > 0, "the decodes took time");
    assert.ok(spent.wait! > 0, "an idle engine coalesces before its first step (--coalesce-ms)");
    const total = PHASES.reduce((n, p) => n + spent[p]!, 0);
    // Phases do not overlap: together they fit in the request's own time.
    assert.ok(total <= elapsed, `phases ${JSON.stringify(spent)} sum to ${total}s, more than the ${elapsed}s that passed`);
  });
});

describe("bounded /metrics", () => {
  const seriesOf = (s: Sample[]) => new Set(s.filter((x) => !x.name.startsWith("llamux_process_")).map((x) => `${x.name}${JSON.stringify(x.labels)}`));

  test("distinct unknown paths fold into one endpoint value: no new series, the text does not grow", async () => {
    // Every series these requests can create, once.
    await fetch(`${t.url}/first-unknown`);
    await fetch(`${t.url}/v1/first-unknown`, { method: "POST" });
    const beforeText = await (await fetch(`${t.url}/metrics`)).text();
    const N = 1000;
    for (let i = 0; i < N; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          fetch(`${t.url}${(i + j) % 2 ? "/v1" : ""}/unknown-${i + j}/x`, { method: (i + j) % 2 ? "POST" : "GET" }).then((r) => r.arrayBuffer()),
        ),
      );
    }
    const afterText = await (await fetch(`${t.url}/metrics`)).text();
    const grown = [...seriesOf(parseMetrics(afterText))].filter((k) => !seriesOf(parseMetrics(beforeText)).has(k));
    assert.deepEqual(grown, []);
    assert.ok(afterText.length < beforeText.length + 1024, `/metrics grew from ${beforeText.length} to ${afterText.length} bytes`);
    assert.ok(sumOf(parseMetrics(afterText), "llamux_requests_total", { endpoint: "other", status: "404" }) >= N);
    assert.doesNotMatch(afterText, /unknown-\d+/);
  });

  test("scrapes in parallel all succeed, and a generation is still served", async () => {
    const texts = await Promise.all(
      Array.from({ length: 20 }, () => fetch(`${t.url}/metrics`).then(async (r) => ({ status: r.status, text: await r.text() }))),
    );
    for (const r of texts) {
      assert.equal(r.status, 200);
      assert.ok(
        parseMetrics(r.text).some((s) => s.name === "llamux_slots_idle"),
        "each answer is a whole exposition",
      );
    }
    const r = await t.client.completions.create({ model: t.modelId, prompt: "Once", max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  });
});
