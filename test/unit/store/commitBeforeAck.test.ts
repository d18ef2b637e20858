// The Responses API commits a finished response to its store before the client
// is told it is complete (src/openai/responses/serving.ts): before the JSON
// body, before response.completed. Driven with a scripted engine stream and a
// fake express Response, so the order is observed, not raced.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, test } from "node:test";
import type { Response } from "express";
import type { EngineEvent } from "../../../engine/index.js";
import type { Admitted } from "../../../src/openai/generation.js";
import type { GenerationMeta } from "../../../src/openai/runGeneration.js";
import type { ResponseEcho } from "../../../src/openai/responses/responseObject.js";
import { respondResponse, streamResponse, type ResponseRun } from "../../../src/openai/responses/serving.js";

class FakeResponse extends EventEmitter {
  statusCode = 200;
  /** Everything sent, in order: SSE frames and JSON bodies. */
  readonly sent: string[] = [];
  status(code: number) {
    this.statusCode = code;
    return this;
  }
  setHeader() {}
  flushHeaders() {}
  write(chunk: string) {
    this.sent.push(chunk);
    return true;
  }
  json(body: unknown) {
    this.sent.push(JSON.stringify(body));
  }
  end() {}
}

const echo: ResponseEcho = {
  id: "resp_1",
  createdAtSeconds: 1,
  model: "m",
  instructions: null,
  maxOutputTokens: null,
  previousResponseId: null,
  conversationId: null,
  store: true,
  temperature: 1,
  topP: 1,
  parallelToolCalls: true,
  tools: [],
  toolChoice: "auto",
  topLogprobs: 0,
  text: { format: { type: "text" }, verbosity: "medium" },
  metadata: {},
  user: null,
  safetyIdentifier: null,
  promptCacheKey: null,
};

function admitted(events: EngineEvent[]): Admitted {
  return {
    index: 0,
    promptTokens: 5,
    promptText: null,
    events: (async function* () {
      yield* events;
    })(),
  };
}

const usage = { promptTokens: 5, completionTokens: 2, cachedTokens: 3 };
const finishing: EngineEvent[] = [
  { type: "delta", text: "Hel", tokens: 1 },
  { type: "delta", text: "lo", tokens: 1, finish: "stop", usage },
];

function setup() {
  const res = new FakeResponse();
  const log: string[] = [];
  const meta: GenerationMeta = { model: "m", fingerprint: "fp", includeUsage: false, onUsage: () => void log.push("usage") };
  const run: ResponseRun = {
    echo,
    tools: null,
    commit: async (response, output) => {
      // What the client had been sent when the commit began.
      const message = output[0]!;
      const text = message.type === "message" && message.content[0]!.type === "output_text" ? message.content[0]!.text : "";
      log.push(`commit:${response.status}:${text}:sent=${res.sent.length}`);
      await new Promise((r) => setTimeout(r, 5));
      log.push("committed");
    },
  };
  return { res, log, meta, run };
}

describe("responses: commit before acknowledgement", () => {
  test("non-streamed: the body is sent only after the commit resolved", async () => {
    const { res, log, meta, run } = setup();
    const sentAtCommit: number[] = [];
    const commit = run.commit;
    run.commit = async (r, o) => {
      sentAtCommit.push(res.sent.length);
      await commit(r, o);
    };
    await respondResponse(res as unknown as Response, admitted(finishing), meta, run);
    assert.deepEqual(sentAtCommit, [0]);
    assert.deepEqual(log, ["usage", "commit:completed:Hello:sent=0", "committed"]);
    assert.equal(res.sent.length, 1);
    assert.equal((JSON.parse(res.sent[0]!) as { status: string }).status, "completed");
  });

  test("streamed: response.completed is written only after the commit resolved, and is the last frame", async () => {
    const { res, log, meta, run } = setup();
    let framesAtCommitEnd = -1;
    const commit = run.commit;
    run.commit = async (r, o) => {
      await commit(r, o);
      framesAtCommitEnd = res.sent.length;
    };
    await streamResponse(res as unknown as Response, admitted(finishing), meta, run);
    const types = res.sent.map((f) => /^event: (\S+)\n/.exec(f)![1]);
    assert.equal(types.at(-1), "response.completed");
    assert.equal(framesAtCommitEnd, res.sent.length - 1, "only response.completed came after the commit");
    assert.ok(types.slice(0, framesAtCommitEnd).every((t) => t !== "response.completed"));
    assert.deepEqual(log.slice(1), [`commit:completed:Hello:sent=${framesAtCommitEnd}`, "committed"]);
  });

  test("streamed: a failed commit ends the stream with response.failed, never response.completed", async () => {
    const { res, meta, run } = setup();
    run.commit = async () => {
      throw new Error("disk full");
    };
    await assert.rejects(streamResponse(res as unknown as Response, admitted(finishing), meta, run), /disk full/);
    const types = res.sent.map((f) => /^event: (\S+)\n/.exec(f)![1]);
    assert.equal(types.at(-1), "response.failed");
    assert.ok(!types.includes("response.completed"));
    const failed = JSON.parse(res.sent.at(-1)!.split("\ndata: ")[1]!) as { response: { status: string; error: { code: string } } };
    assert.equal(failed.response.status, "failed");
    assert.equal(failed.response.error.code, "server_error");
  });

  test("streamed: an engine error midway is response.failed and nothing is committed", async () => {
    const { res, log, meta, run } = setup();
    const events: EngineEvent[] = [
      { type: "delta", text: "Hel", tokens: 1 },
      { type: "error", error: { code: "engine_restarted", param: null, message: "The engine restarted." } },
    ];
    await streamResponse(res as unknown as Response, admitted(events), meta, run);
    const types = res.sent.map((f) => /^event: (\S+)\n/.exec(f)![1]);
    assert.equal(types.at(-1), "response.failed");
    assert.deepEqual(log, []);
    const failed = JSON.parse(res.sent.at(-1)!.split("\ndata: ")[1]!) as {
      response: { output: Array<{ status: string; content: Array<{ text: string }> }>; error: { message: string } };
    };
    assert.equal(failed.response.error.message, "The engine restarted.");
    assert.equal(failed.response.output[0]!.status, "incomplete");
    assert.equal(failed.response.output[0]!.content[0]!.text, "Hel");
  });

  test("streamed: a client that left before the end gets nothing committed", async () => {
    const { res, log, meta, run } = setup();
    const events = (async function* (): AsyncGenerator<EngineEvent> {
      yield { type: "delta", text: "Hel", tokens: 1 };
      res.emit("close"); // the client hangs up; the engine stream then ends without a finish (cancelled)
    })();
    await streamResponse(res as unknown as Response, { index: 0, promptTokens: 5, promptText: null, events }, meta, run);
    assert.deepEqual(log, []);
    const types = res.sent.map((f) => /^event: (\S+)\n/.exec(f)![1]);
    assert.ok(!types.includes("response.failed") && !types.includes("response.completed"));
  });
});
