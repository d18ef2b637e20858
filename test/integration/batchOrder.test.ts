// Every decode the engine makes lists its sequences in ascending order, on a
// real model through node-llama-cpp (engine/batchOrder.ts): llama.cpp reads
// the weights once per run of consecutive sequence ids, so a batch listed
// 1, 2, 0 costs two passes where 0, 1, 2 costs one. The case that breaks
// node-llama-cpp's own order: a request admitted to a lower slot while
// higher ones keep decoding (a new evaluation reaches the batch queue after
// resumed ones).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { BatchingOptions, LlamaContext } from "node-llama-cpp";
import { ENGINE_BATCHING } from "../../engine/batchOrder.js";
import { Engine } from "../../engine/engine.js";
import type { EngineRequest, FromWorker } from "../../engine/protocol.js";
import { ChatTemplate } from "../../models/chatTemplate.js";
import { loadModel, type LoadedModel } from "../../models/load.js";
import { toSamplingParams } from "../../src/openai/common.js";
import { MODELS } from "./helpers/server.js";

const SLOTS = 3;

let loaded: LoadedModel;
before(async () => {
  loaded = await loadModel({ modelPath: MODELS.stories260K, threads: 2, gpu: "off" });
});
after(async () => {
  await loaded?.model.dispose();
  await loaded?.llama.dispose();
});

function request(text: string, maxTokens: number): EngineRequest {
  return {
    tenant: "t",
    prompt: { kind: "text", text },
    maxTokens,
    stop: [],
    echo: false,
    priority: 0,
    sampling: toSamplingParams({ temperature: 0, seed: 1, ignore_eos: true }),
  };
}

/**
 * Runs A (2 tokens), B and C (12 tokens) and D on a 3-slot engine: A, B, C
 * take slots 0, 1, 2; D waits for A's slot and joins while B and C decode.
 * Returns the sequence ids of every decode, in batch order.
 */
async function batchesOf(batching: BatchingOptions | undefined): Promise<number[][]> {
  const { model } = loaded;
  const context: LlamaContext = await model.createContext({ sequences: SLOTS, contextSize: 256, batchSize: 512, threads: { ideal: 2, min: 2 }, batching });
  const batches: number[][] = [];
  let current: number[] = [];
  // The native context's batch calls (private to node-llama-cpp): what llama.cpp receives.
  // Configurable, as the engine's SamplingGuard wraps decodeBatch again.
  const native = (context as unknown as { _ctx: Record<string, (...args: unknown[]) => unknown> })._ctx;
  const add = native.addToBatch!.bind(native);
  const decode = native.decodeBatch!.bind(native);
  Object.defineProperty(native, "addToBatch", {
    configurable: true,
    writable: true,
    value: (seq: number, ...rest: unknown[]) => (current.push(seq), add(seq, ...rest)),
  });
  Object.defineProperty(native, "decodeBatch", { configurable: true, writable: true, value: () => (batches.push(current), (current = []), decode()) });
  const done = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  const emit = (msg: FromWorker) => {
    if (msg.t === "step") for (const d of msg.deltas) if (d.finish) done.get(d.id)?.resolve();
    // A rejection fails the test instead of leaving it waiting for a finish that never comes.
    if (msg.t === "rejected") done.get(msg.id)?.reject(new Error(`${msg.id} rejected: ${msg.error.message}`));
  };
  const engine = new Engine(
    model,
    context,
    ChatTemplate.select(model, null),
    { slots: SLOTS, contextPerSlot: 256, stepTokens: 512, coalesceMs: 0, followUpMs: 0, costs: { inputCost: 1, outputCost: 1 } },
    emit,
    null,
  );
  try {
    const finished = ["a", "b", "c", "d"].map((id) => new Promise<void>((resolve, reject) => done.set(id, { resolve, reject })));
    engine.submit("a", request("Once upon a time", 2));
    engine.submit("b", request("The little dog", 12));
    engine.submit("c", request("A girl named Lily", 12));
    engine.submit("d", request("One day the sun", 4));
    await Promise.all(finished);
  } finally {
    await engine.stop();
    await context.dispose();
  }
  return batches;
}

describe("decode batch order", () => {
  test("with the engine's batching, every decode lists its sequences in ascending order", async () => {
    const batches = await batchesOf(ENGINE_BATCHING);
    // D joined slot 0 while slots 1 and 2 were decoding.
    assert.ok(
      batches.some((b) => b.length === SLOTS),
      JSON.stringify(batches),
    );
    for (const b of batches)
      assert.deepEqual(
        b,
        [...b].sort((x, y) => x - y),
        JSON.stringify(batches),
      );
  });

  test("node-llama-cpp's own batching lists that join after the decoding sequences", async () => {
    const batches = await batchesOf(undefined);
    assert.ok(
      batches.some((b) => b.join() === "1,2,0"),
      JSON.stringify(batches),
    );
  });
});
