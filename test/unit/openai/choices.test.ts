// OpenAI's n (src/openai/choices.ts): the engine requests of n choices, the
// usage billed for them, and reading their interleaved deltas.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { EngineEvent, EngineRequest, Usage } from "../../../engine/index.js";
import { ApiError } from "../../../src/errors.js";
import { forkChoices, readChoices, requestUsage } from "../../../src/openai/choices.js";
import type { Admitted } from "../../../src/openai/generation.js";

const REQ: EngineRequest = {
  tenant: "t",
  prompt: { kind: "text", text: "Once" },
  maxTokens: 8,
  stop: [],
  sampling: {
    temperature: 1,
    topP: 1,
    topK: null,
    minP: null,
    seed: 7,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repeatPenalty: null,
    logitBias: {},
    ignoreEos: false,
  },
  echo: false,
  priority: 0,
};

describe("forkChoices", () => {
  test("n = 1 is the request alone, with no fork", () => {
    assert.deepEqual(forkChoices(REQ, 1), [REQ]);
  });

  test("n > 1: n copies in one group, indexes 0..n-1, each otherwise the same request", () => {
    const reqs = forkChoices(REQ, 3, "g1");
    assert.deepEqual(
      reqs.map((r) => r.fork),
      [
        { group: "g1", index: 0 },
        { group: "g1", index: 1 },
        { group: "g1", index: 2 },
      ],
    );
    for (const r of reqs) assert.deepEqual({ ...r, fork: undefined }, { ...REQ, fork: undefined });
    assert.equal(REQ.fork, undefined, "the original is untouched");
  });

  test("each request gets its own group", () => {
    assert.notEqual(forkChoices(REQ, 2)[0]!.fork!.group, forkChoices(REQ, 2)[0]!.fork!.group);
  });
});

describe("requestUsage", () => {
  const u = (promptTokens: number, completionTokens: number, cachedTokens: number, queueMs = 0): Usage => ({
    promptTokens,
    completionTokens,
    cachedTokens,
    queueMs,
  });

  test("each prompt billed once (its first choice's prompt and cached tokens), every choice's completion", () => {
    // Two prompts × n = 2; the members' cached tokens are the copied prompt.
    const usages = [u(10, 3, 2, 5), u(10, 4, 9, 1), u(20, 5, 0, 7), u(20, 6, 19, 2)];
    assert.deepEqual(requestUsage(usages, 2), { promptTokens: 30, completionTokens: 18, cachedTokens: 2, queueMs: 7 });
  });

  test("n = 1 sums every prompt", () => {
    assert.deepEqual(requestUsage([u(10, 3, 2), u(20, 5, 1)], 1), { promptTokens: 30, completionTokens: 8, cachedTokens: 3, queueMs: 0 });
  });
});

describe("readChoices", () => {
  type Script = Array<EngineEvent | "pause">;
  /** A choice whose events follow `script`; "pause" yields to the other choices for a tick. */
  function choice(index: number, script: Script): Admitted {
    async function* events(): AsyncGenerator<EngineEvent> {
      for (const e of script) {
        if (e === "pause") await new Promise((r) => setImmediate(r));
        else yield e;
      }
    }
    return { index, events: events(), promptTokens: 1, promptText: null, logprobs: false } as Admitted;
  }
  const delta = (text: string, finish?: "stop"): EngineEvent => ({
    type: "delta",
    text,
    tokens: 1,
    ...(finish ? { finish, usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 } } : {}),
  });

  test("every choice's deltas, in order per choice, interleaved as they come", async () => {
    const seen: string[] = [];
    await readChoices([choice(0, [delta("a"), "pause", delta("b", "stop")]), choice(1, [delta("x"), "pause", delta("y", "stop")])], async (c, ev) => {
      seen.push(`${c.index}${ev.text}`);
    });
    assert.deepEqual(seen, ["0a", "1x", "0b", "1y"]);
  });

  test("an engine error rejects with its ApiError, and no delta is handed on after it", async () => {
    const seen: string[] = [];
    const failing = choice(0, [delta("a"), "pause", { type: "error", error: { code: "engine_error", param: null, message: "boom" } }]);
    const slow = choice(1, [delta("x"), "pause", "pause", "pause", delta("y"), delta("z", "stop")]);
    await assert.rejects(
      readChoices([failing, slow], async (c, ev) => void seen.push(`${c.index}${ev.text}`)),
      (err) => err instanceof ApiError && err.code === "engine_error" && /boom/.test(err.message),
    );
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, ["0a", "1x"]);
  });

  test("a choice whose events end without a final delta (a cancel) is an error, not a silent success", async () => {
    await assert.rejects(
      readChoices([choice(0, [delta("a")])], async () => undefined),
      (err) => err instanceof ApiError,
    );
  });
});
