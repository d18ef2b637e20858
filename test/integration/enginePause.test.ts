// Pause and resume on the real worker (issue 19 item 9): a request whose
// front-side queue holds EngineClientOptions.maxBufferedBytes is paused in the
// engine (keeps its slot, is not stepped) until its reader drains the queue,
// and a paused request that is cancelled frees its slot at once.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { EngineClient, type EngineRequest, type RequestEvents } from "../../engine/index.js";
import { MODELS, waitFor } from "./helpers/server.js";

let engine: EngineClient;
before(async () => {
  engine = new EngineClient({
    worker: {
      modelPath: MODELS.stories260K,
      modelId: "stories",
      slots: 4,
      contextPerSlot: 256,
      threads: 1,
      gpu: "off",
      chatTemplateFile: null,
      stepTokens: 64,
      coalesceMs: 0,
      kvCacheDir: null,
    },
    // One delta fills it: every request is paused after its first output.
    maxBufferedBytes: 1,
  });
  await engine.start();
});
after(async () => {
  await engine?.stop();
});

const request = (i: number): EngineRequest => ({
  tenant: "t",
  prompt: { kind: "text", text: `Once upon a time ${i}` },
  maxTokens: 200,
  stop: [],
  sampling: {
    temperature: 1,
    topP: 1,
    topK: null,
    minP: null,
    seed: i,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repeatPenalty: null,
    logitBias: {},
    ignoreEos: true,
  },
  echo: false,
  priority: 0,
});

const stats = async () => (await engine.stats())!;

describe("paused requests", () => {
  test("an unread request stops being stepped, resumes when read, and a cancelled one frees its slot", async () => {
    const ac = new AbortController();
    const streams: RequestEvents[] = [0, 1, 2, 3].map((i) => engine.submit(request(i), ac.signal));
    await waitFor(async () => (await stats()).paused === 4, 30_000, "all four to be paused");
    const pausedAt = (await stats()).decodedTokens;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await stats()).decodedTokens, pausedAt, "nothing is generated for paused requests");
    assert.equal((await stats()).running, 4, "they keep their slots");

    // Reading one drains its queue: it resumes (and is paused again at its next delta).
    let read = 0;
    for await (const ev of streams[0]!) {
      if (ev.type === "delta") read += ev.tokens;
      if (read >= 5) break;
    }
    assert.ok((await stats()).decodedTokens > pausedAt, "the one read went on");

    ac.abort();
    await waitFor(async () => (await stats()).running === 0, 10_000, "the cancelled paused requests to free their slots");
    const usages = await Promise.all(streams.map((s) => s.usage));
    for (const u of usages) assert.ok(u && u.completionTokens >= 1 && u.completionTokens < 200, `the engine reports what each used: ${JSON.stringify(u)}`);
  });
});
