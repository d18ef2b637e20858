// Models list, health and readiness, and client disconnects freeing their slot.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MODELS, startTestServer, waitFor, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.tinyRandom, "--slots", "1", "--ctx-per-slot", "1024", "--alias", "tiny"]);
});
after(async () => {
  await t?.close();
});

describe("models, health, readiness", () => {
  test("/v1/models lists the model under its id and alias; each can be retrieved", async () => {
    const list = await t.client.models.list();
    assert.deepEqual(list.data.map((m) => m.id).sort(), ["llama-2-tiny-random", "tiny"]);
    const m = await t.client.models.retrieve("tiny");
    assert.equal(m.id, "tiny");
    assert.equal(m.object, "model");
    assert.equal(m.owned_by, "llamux");
    const r = await t.client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "x" }], max_tokens: 2 });
    assert.equal(r.model, "tiny");
  });

  test("/metrics reports latency histograms and the engine's gauges, read live from the worker", async () => {
    await t.client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "x" }], max_tokens: 3, ignore_eos: true } as never);
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const value = (name: string): number => {
      const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
      assert.ok(line, `${name} missing`);
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    assert.ok(value('llamux_time_to_first_token_seconds_count{model="tiny"}') >= 1);
    assert.ok(value('llamux_inter_token_latency_seconds_count{model="tiny"}') >= 2, "3 tokens, 2 gaps");
    assert.equal(value("llamux_slots_busy") + value("llamux_slots_idle"), 1);
    assert.equal(value("llamux_requests_running"), 0);
    assert.ok(value("llamux_kv_cells_used") > 0, "the idle slot keeps its cache");
    assert.equal(value("llamux_kv_cache_usage_ratio"), 0, "an idle slot's cache is evictable: none of the KV cache is in use");
    assert.equal(value("llamux_engine_restarts_total"), 0);
  });

  test("/health and /ready report ok once loaded", async () => {
    assert.equal((await fetch(`${t.url}/health`)).status, 200);
    const ready = await fetch(`${t.url}/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: "ready", models: { [t.modelId]: "ready" } });
  });

  test("streamed text from a 32k byte-fallback vocabulary is valid UTF-8 in every frame", async () => {
    const body = { model: t.modelId, messages: [{ role: "user" as const, content: "żółw 🦙 é" }], max_tokens: 200, temperature: 1.5, seed: 3 };
    const plain = (await t.client.chat.completions.create(body)).choices[0]!.message.content ?? "";
    const stream = await t.client.chat.completions.create({ ...body, stream: true });
    let text = "";
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content ?? "";
      // a lone surrogate would mean a character was cut in half
      assert.ok(!/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(piece));
      assert.doesNotThrow(() => new TextDecoder("utf-8", { fatal: true }).decode(new TextEncoder().encode(piece)));
      text += piece;
    }
    assert.equal(text, plain);
  });
});

describe("cancellation", () => {
  test("a client that disconnects mid-stream frees its slot within a step", async () => {
    const ac = new AbortController();
    const stream = await t.client.chat.completions.create(
      { model: t.modelId, messages: [{ role: "user", content: "go" }], max_tokens: 900, ignore_eos: true, stream: true } as never,
      { signal: ac.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream as unknown as AsyncIterable<unknown>) {
        if (++chunks === 3) ac.abort();
      }
    } catch {
      // the SDK throws on abort
    }
    await waitFor(async () => (await t.srv.engine.stats())?.running === 0, 2000, "the cancelled request to leave the engine");
    const stats = await t.srv.engine.stats();
    assert.equal(stats!.slotsBusy, 0);
    // The only slot is free: a new request completes.
    const r = await t.client.chat.completions.create({
      model: t.modelId,
      messages: [{ role: "user", content: "x" }],
      max_tokens: 3,
      ignore_eos: true,
    } as never);
    assert.equal((r as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
    assert.ok(stats!.decodedTokens < 900, `generation should have stopped early, decoded ${stats!.decodedTokens}`);
  });

  test("a non-streaming request whose client leaves is cancelled too", async () => {
    const ac = new AbortController();
    const p = t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "go" }], max_tokens: 900, ignore_eos: true } as never, {
      signal: ac.signal,
    });
    await waitFor(async () => (await t.srv.engine.stats())?.running === 1, 2000, "the request to start");
    ac.abort();
    await assert.rejects(p);
    await waitFor(async () => (await t.srv.engine.stats())?.running === 0, 2000, "the request to be cancelled");
  });
});
