// The worker's embeddings queue against a fake model whose embedding context
// records what it is asked to evaluate: the context is created once, on the
// first request; requests are served round-robin, one input each; a cancelled
// request's remaining inputs are never evaluated; bad inputs cost no
// evaluation; vectors come out unit-length.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { LlamaModel } from "node-llama-cpp";
import { Embedder, unitLength } from "../../../engine/embedder.js";
import type { EmbedRequest, FromWorker } from "../../../engine/protocol.js";

const BOS = 1;
const VOCAB = 100;

interface Fake {
  model: LlamaModel;
  /** Inputs evaluated, in order, as the first token after BOS (the tests tag inputs that way). */
  evaluated: number[];
  created: Array<Record<string, unknown>>;
  disposed: number;
  /** Called before each evaluation returns. */
  onEvaluate: (tag: number) => void;
  failCreate: boolean;
}

function fakeModel(architecture: Record<string, unknown> = {}): Fake {
  const fake: Fake = { model: null as unknown as LlamaModel, evaluated: [], created: [], disposed: 0, onEvaluate: () => {}, failCreate: false };
  const withBos = (t: number[]) => (t[0] === BOS ? t : [BOS, ...t]);
  const context = {
    calculateInputLength: (t: number[]) => withBos(t).length,
    getEmbeddingFor: async (t: number[]) => {
      await new Promise((r) => setImmediate(r));
      const tag = withBos(t)[1]!;
      fake.evaluated.push(tag);
      fake.onEvaluate(tag);
      return { vector: [3 * tag, 4 * tag] };
    },
    dispose: async () => {
      fake.disposed++;
    },
  };
  fake.model = {
    // Text "7 8" is tokens [7, 8].
    tokenize: (text: string) => text.split(" ").map(Number),
    fileInfo: { metadata: { tokenizer: { ggml: { tokens: new Array(VOCAB) } } }, architectureMetadata: architecture },
    createEmbeddingContext: async (opts: Record<string, unknown>) => {
      await new Promise((r) => setImmediate(r));
      if (fake.failCreate) throw new Error("out of memory");
      fake.created.push(opts);
      return context;
    },
  } as unknown as LlamaModel;
  return fake;
}

function harness(maxInputTokens = 8, architecture: Record<string, unknown> = {}) {
  const fake = fakeModel(architecture);
  const sent: FromWorker[] = [];
  const embedder = new Embedder(fake.model, { maxInputTokens, threads: 3, batchTokens: 4 }, (m) => sent.push(m));
  const done = (id: string) => sent.find((m) => (m.t === "embedded" || m.t === "embed_failed") && m.id === id);
  const until = async (cond: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  return { fake, sent, embedder, done, until };
}

const texts = (...tags: number[]): EmbedRequest => ({ tenant: "t", inputs: tags.map((tag) => ({ kind: "text", text: `${tag} 50` })) });

describe("Embedder", () => {
  test("the context is created on the first request, once, with generation's threads and batch", async () => {
    const h = harness(8);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(h.fake.created.length, 0, "no request, no context");
    h.embedder.submit("a", texts(2));
    await h.until(() => !!h.done("a"));
    h.embedder.submit("b", texts(3));
    await h.until(() => !!h.done("b"));
    assert.deepEqual(h.fake.created, [{ contextSize: 9, batchSize: 4, threads: { ideal: 3, min: 3 } }]);
    await h.embedder.stop();
    await h.embedder.dispose();
    assert.equal(h.fake.disposed, 1);
  });

  test("a pooled or non-causal model gets the whole input in one batch", async () => {
    for (const architecture of [{ pooling_type: 1 }, { pooling_type: 2 }, { attention: { causal: false } }]) {
      const h = harness(8, architecture);
      h.embedder.submit("a", texts(2));
      await h.until(() => !!h.done("a"));
      assert.equal(h.fake.created[0]!.batchSize, 9, JSON.stringify(architecture));
    }
    const none = harness(8, { pooling_type: 0, attention: { causal: true } });
    none.embedder.submit("a", texts(2));
    await none.until(() => !!none.done("a"));
    assert.equal(none.fake.created[0]!.batchSize, 4);
  });

  test("requests are served round-robin, one input each, and answered as each completes with unit vectors and token counts", async () => {
    const h = harness();
    h.embedder.submit("a", texts(10, 11, 12));
    h.embedder.submit("b", texts(20));
    h.embedder.submit("c", {
      tenant: "t",
      inputs: [
        { kind: "tokens", tokens: [BOS, 30] },
        { kind: "tokens", tokens: [31, 5, 6] },
      ],
    });
    await h.until(() => ["a", "b", "c"].every((id) => h.done(id)));
    assert.deepEqual(h.fake.evaluated, [10, 20, 30, 11, 31, 12]);
    assert.deepEqual(
      h.sent.map((m) => (m as { id: string }).id),
      ["b", "c", "a"],
    );
    const c = h.done("c") as Extract<FromWorker, { t: "embedded" }>;
    assert.equal(c.t, "embedded");
    // Counts as evaluated: BOS added once ("30" had it already), never twice.
    assert.deepEqual(c.promptTokens, [2, 4]);
    assert.deepEqual(
      c.vectors.map((v) => Array.from(v)),
      [
        [Math.fround(0.6), Math.fround(0.8)],
        [Math.fround(0.6), Math.fround(0.8)],
      ],
    );
    assert.ok(c.vectors[0] instanceof Float32Array);
  });

  test("a cancelled request's remaining inputs are never evaluated, and it gets no answer", async () => {
    const h = harness();
    h.fake.onEvaluate = (tag) => {
      if (tag === 41) h.embedder.cancel("a");
    };
    h.embedder.submit("a", texts(40, 41, 42, 43, 44));
    h.embedder.submit("b", texts(50, 51, 52, 53));
    await h.until(() => !!h.done("b"));
    assert.deepEqual(h.fake.evaluated, [40, 50, 41, 51, 52, 53]);
    assert.equal(h.done("a"), undefined);
    assert.equal(h.embedder.cancel("a"), false, "forgotten once dropped");
    assert.equal(h.embedder.cancel("nope"), false, "not an embeddings request: the worker passes it to the engine");
  });

  test("a token id outside the vocabulary or an input over the context fails its request before any evaluation; others run", async () => {
    const h = harness(4);
    h.embedder.submit("vocab", {
      tenant: "t",
      inputs: [
        { kind: "text", text: "60" },
        { kind: "tokens", tokens: [61, VOCAB] },
      ],
    });
    h.embedder.submit("long", {
      tenant: "t",
      inputs: [
        { kind: "text", text: "70 1 2" },
        { kind: "text", text: "71 1 2 3" },
      ],
    });
    h.embedder.submit("fits", { tenant: "t", inputs: [{ kind: "text", text: "80 1 2" }] });
    await h.until(() => ["vocab", "long", "fits"].every((id) => h.done(id)));
    assert.deepEqual(h.fake.evaluated, [80]);
    assert.deepEqual(h.done("vocab"), {
      t: "embed_failed",
      id: "vocab",
      error: { code: "invalid_prompt", param: "input", message: `Invalid 'input[1]': token id ${VOCAB} is not below the vocabulary size ${VOCAB}.` },
    });
    const long = h.done("long") as Extract<FromWorker, { t: "embed_failed" }>;
    assert.equal(long.error.code, "context_length_exceeded");
    assert.equal(long.error.param, "input");
    assert.match(long.error.message, /maximum context length is 4 tokens, however 'input\[1\]' has 5 tokens/);
    assert.equal(h.done("fits")?.t, "embedded");
  });

  test("a context that cannot be created fails the pending requests, and the next request tries again", async () => {
    const h = harness();
    h.fake.failCreate = true;
    h.embedder.submit("a", texts(1));
    h.embedder.submit("b", texts(2));
    await h.until(() => !!h.done("a") && !!h.done("b"));
    for (const id of ["a", "b"]) {
      const m = h.done(id) as Extract<FromWorker, { t: "embed_failed" }>;
      assert.deepEqual(m.error, { code: "engine_error", param: null, message: "Embedding failed: out of memory" });
    }
    h.fake.failCreate = false;
    h.embedder.submit("c", texts(3));
    await h.until(() => !!h.done("c"));
    assert.equal(h.done("c")?.t, "embedded");
  });

  test("stop() ends the loop after the input in flight", async () => {
    const h = harness();
    let stopping: Promise<void> | null = null;
    h.fake.onEvaluate = (tag) => {
      if (tag === 91) stopping = h.embedder.stop();
    };
    h.embedder.submit("a", texts(90, 91, 92, 93));
    await h.until(() => stopping !== null);
    await stopping;
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(h.fake.evaluated, [90, 91]);
    assert.equal(h.done("a"), undefined);
  });
});

describe("unitLength", () => {
  test("scales to L2 norm 1 in float32; a zero vector stays zero", () => {
    const v = unitLength([1, 2, 2]);
    assert.deepEqual(Array.from(v), [1 / 3, 2 / 3, 2 / 3].map(Math.fround));
    assert.deepEqual(Array.from(unitLength([0, 0])), [0, 0]);
  });
});
