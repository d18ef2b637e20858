// The sampleToken wrapper (engine/logprobs.ts) against a fake of node-llama-cpp's
// native context and sampler: which calls it touches, the arithmetic, and the
// refusal to run on internals of another shape. The real addon is checked
// end to end in test/integration/logprobs.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import { RawLogprobs, readLogprobs, SAMPLED_KEY } from "../../../engine/logprobs.js";
import { MAX_TOP_LOGPROBS } from "../../../engine/protocol.js";
import { TokenPieces } from "../../../engine/tokenBytes.js";

/** Raw logits of a 30-token vocabulary: token t has logit t / 4, so 29 is the argmax. */
const LOGITS = Array.from({ length: 30 }, (_, t) => t / 4);
const logSumExp = Math.log(LOGITS.reduce((s, l) => s + Math.exp(l), 0));

class FakeSampler {
  config: Record<string, unknown> | null = null;
  disposed = false;
  applyConfig(config: Record<string, unknown>) {
    this.config = config;
  }
  dispose() {
    this.disposed = true;
  }
}

interface Call {
  index: number;
  sampler: unknown;
  rest: unknown[];
}

/** A native context whose job samplers always pick token 7; the raw samplers answer as AddonContext.cpp does. */
function fakeNative() {
  const calls: Call[] = [];
  const samplers: FakeSampler[] = [];
  const proto = {
    sampleToken(this: unknown, index: number, sampler: unknown, ...rest: unknown[]): Promise<unknown> {
      calls.push({ index, sampler, rest });
      const s = sampler as FakeSampler;
      if (!(s instanceof FakeSampler) || s.config === null) return Promise.resolve(rest.length > 0 ? [7] : 7);
      if (s.config.temperature === 0) {
        // Greedy: the filter's logits plus the selected (argmax) one, and the total weight.
        const max = Math.max(...LOGITS);
        const filter = ((rest[2] as unknown[])[0] as number[]).concat([29]);
        const weight = LOGITS.reduce((sum, l) => sum + Math.exp(l - max), 0);
        return Promise.resolve([29, undefined, undefined, filter.flatMap((t) => [t, LOGITS[t]!]), weight]);
      }
      const k = (rest[2] as unknown[])[4] as number;
      const top = LOGITS.map((l, t) => [t, l] as const)
        .sort((a, b) => b[1] - a[1])
        .slice(0, k);
      return Promise.resolve([top[0]?.[0] ?? -1, undefined, undefined, top.flat()]);
    },
  };
  // As with napi, the method lives read-only on the prototype.
  Object.defineProperty(proto, "sampleToken", { writable: false });
  const ctx = Object.create(proto) as { sampleToken: (...args: unknown[]) => Promise<unknown> };
  const model = {
    fileInfo: { metadata: { tokenizer: { ggml: { model: "llama", tokens: LOGITS.map((_, t) => `t${t}`) } } } },
    detokenize: () => assert.fail("the vocabulary has every token"),
    _model: {},
    _llama: {
      _bindings: {
        AddonSampler: class extends FakeSampler {
          constructor() {
            super();
            samplers.push(this);
          }
        },
      },
    },
  };
  return { ctx, calls, samplers, model: model as unknown as LlamaModel, context: { _ctx: ctx } as unknown as LlamaContext };
}

test("calls without probabilities, and controlledEvaluate's layout, reach the native sampleToken untouched", async () => {
  const f = fakeNative();
  const raw = new RawLogprobs(f.model, f.context);
  const job = {};
  assert.equal(await f.ctx.sampleToken(3, job), 7);
  assert.deepEqual(await f.ctx.sampleToken(3, job, false, false), [7]);
  assert.deepEqual(await f.ctx.sampleToken(3, job, true, false, false, false), [7]);
  assert.equal(f.calls.length, 3);
  assert.deepEqual(f.calls[2]!.rest, [true, false, false, false]);
  raw.dispose();
});

test("with probabilities: the job's own token, its raw log-probability and the raw top 20", async () => {
  const f = fakeNative();
  const raw = new RawLogprobs(f.model, f.context);
  const job = {};
  const result = (await f.ctx.sampleToken(5, job, true, false)) as [number, number[]];
  assert.equal(result[0], 7, "the job's sampler picked the token");
  // The job's sampler was asked exactly as without logprobs.
  const jobCall = f.calls.find((c) => c.sampler === job)!;
  assert.deepEqual(jobCall.rest, []);
  assert.ok(
    f.calls.every((c) => c.index === 5),
    "every call reads the same batch logits",
  );
  const packed = new Map<number, number>();
  for (let i = 0; i < result[1].length; i += 2) packed.set(result[1][i]!, result[1][i + 1]!);
  assert.ok(Math.abs(packed.get(SAMPLED_KEY)! - (LOGITS[7]! - logSumExp)) < 1e-9);
  const top = [...packed].filter(([t]) => t !== SAMPLED_KEY);
  assert.equal(top.length, MAX_TOP_LOGPROBS);
  top.forEach(([t, lp], i) => {
    assert.equal(t, 29 - i, "most likely first");
    assert.ok(Math.abs(lp - (LOGITS[t]! - logSumExp)) < 1e-9);
  });
  // The raw samplers: greedy with nothing else, and top-k at temperature 1.
  assert.deepEqual(
    f.samplers.map((s) => s.config),
    [{ temperature: 0 }, { temperature: 1, topK: MAX_TOP_LOGPROBS, seed: 0 }],
  );
  raw.dispose();
});

test("concurrent calls each get their own raw samplers; dispose frees them all and restores the native method", async () => {
  const f = fakeNative();
  const raw = new RawLogprobs(f.model, f.context);
  await Promise.all([f.ctx.sampleToken(0, {}, true, false), f.ctx.sampleToken(1, {}, true, false), f.ctx.sampleToken(2, {}, true, false)]);
  assert.equal(f.samplers.length, 6, "three pairs for three calls in flight");
  await f.ctx.sampleToken(0, {}, true, false);
  assert.equal(f.samplers.length, 6, "pairs are reused once free");
  raw.dispose();
  assert.ok(f.samplers.every((s) => s.disposed));
  assert.equal(Object.hasOwn(f.ctx, "sampleToken"), false);
  assert.deepEqual(await f.ctx.sampleToken(0, {}, true, false), [7], "the native method again");
});

test("entry(): the sampled token's entry with its vocabulary text", async () => {
  const f = fakeNative();
  const raw = new RawLogprobs(f.model, f.context);
  const [token, packed] = (await f.ctx.sampleToken(0, {}, true, false)) as [number, number[]];
  const map = new Map<number, number>();
  for (let i = 0; i < packed.length; i += 2) map.set(packed[i]!, packed[i + 1]!);
  const e = raw.entry(token, map, 2);
  assert.equal(e.token, "t7");
  assert.deepEqual(e.bytes, [...Buffer.from("t7")]);
  assert.deepEqual(
    e.top.map((x) => x.token),
    ["t29", "t28"],
  );
  raw.dispose();
});

test("internals of another shape fail at construction, with a clear error", () => {
  const f = fakeNative();
  assert.throws(() => new RawLogprobs(f.model, {} as LlamaContext), /internals changed.*sampleToken/);
  assert.throws(() => new RawLogprobs({ ...(f.model as object), _llama: {} } as unknown as LlamaModel, f.context), /internals changed.*AddonSampler/);
  const raw = new RawLogprobs(f.model, f.context);
  assert.throws(() => new RawLogprobs(f.model, f.context), /already installed/);
  raw.dispose();
});

test("a native result of another shape fails the call rather than return wrong numbers", async () => {
  const f = fakeNative();
  const raw = new RawLogprobs(f.model, f.context);
  // The greedy sampler stops reporting the total weight.
  f.samplers[0]!.config = { temperature: 0.5 };
  await assert.rejects(f.ctx.sampleToken(0, {}, true, false), /internals changed/);
  raw.dispose();
});

test("readLogprobs: the sampled token's entry, the requested number of alternatives, pieces attached", () => {
  const pieces = new TokenPieces({ model: "llama", tokens: ["a", "b", "c", "</s>"], tokenTypes: [1, 1, 1, 3] }, () => "");
  const packed = new Map([
    [SAMPLED_KEY, -2.5],
    [3, -0.1],
    [0, -1],
    [1, -2.5],
  ]);
  assert.deepEqual(readLogprobs(1, packed, 2, pieces), {
    token: "b",
    bytes: [0x62],
    logprob: -2.5,
    top: [
      { token: "</s>", bytes: null, logprob: -0.1 },
      { token: "a", bytes: [0x61], logprob: -1 },
    ],
  });
  assert.deepEqual(readLogprobs(1, packed, 0, pieces).top, []);
  assert.equal(readLogprobs(1, new Map([[SAMPLED_KEY, -Infinity]]), 0, pieces).logprob, -9999);
  assert.throws(() => readLogprobs(1, undefined, 0, pieces), /internals changed/);
});
