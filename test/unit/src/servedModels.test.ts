// ServedModels (src/servedModels.ts): routing by id and alias, name clashes,
// readiness over every model, and the state a model reports, with fake engines.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { EngineClient } from "../../../engine/index.js";
import type { ServerQueue } from "../../../src/quota/serverQueue.js";
import { modelState, ServedModels, type ServedModel } from "../../../src/servedModels.js";

function fake(id: string, aliases: string[], state: EngineClient["state"] = "ready", slots = 4): ServedModel {
  const engine = { state, ready: state === "ready", model: state === "ready" ? { slots } : null } as unknown as EngineClient;
  return { id, aliases, engine, queue: {} as ServerQueue, loadError: null };
}

describe("ServedModels", () => {
  test("finds a model by its id or any alias, and nothing else", () => {
    const a = fake("a", ["gpt-4o-mini", "default"]);
    const b = fake("b", ["small"]);
    const models = new ServedModels([a, b]);
    assert.equal(models.find("a"), a);
    assert.equal(models.find("default"), a);
    assert.equal(models.find("small"), b);
    assert.equal(models.find("c"), undefined);
    assert.equal(models.find("A"), undefined, "names are exact");
    assert.deepEqual(models.names(), ["a", "b", "gpt-4o-mini", "default", "small"], "ids first, then aliases");
  });

  test("two models claiming one name is an error naming both", () => {
    assert.throws(() => new ServedModels([fake("a", ["x"]), fake("b", ["x"])]), /model name 'x' is used by both 'a' and 'b'/);
    assert.throws(() => new ServedModels([fake("a", []), fake("b", ["a"])]), /model name 'a' is used by both 'a' and 'b'/);
    assert.doesNotThrow(() => new ServedModels([fake("a", ["a"])]), "a model may repeat its own id as an alias");
  });

  test("ready only when every model is; minSlots over the loaded ones", () => {
    assert.equal(new ServedModels([fake("a", [], "ready", 8), fake("b", [], "ready", 2)]).ready, true);
    const loading = new ServedModels([fake("a", [], "ready", 8), fake("b", [], "starting")]);
    assert.equal(loading.ready, false);
    assert.equal(loading.minSlots(), 8, "a model not loaded yet does not count");
    assert.equal(new ServedModels([fake("a", [], "ready", 8), fake("b", [], "ready", 2)]).minSlots(), 2);
    assert.equal(new ServedModels([fake("a", [], "starting")]).minSlots(), null);
  });

  test("a model's state: failed wins over the engine's, otherwise the engine's in API words", () => {
    assert.equal(modelState(fake("a", [], "starting")), "loading");
    assert.equal(modelState(fake("a", [], "ready")), "ready");
    assert.equal(modelState(fake("a", [], "restarting")), "restarting");
    assert.equal(modelState(fake("a", [], "stopping")), "stopping");
    const failed = fake("a", [], "stopped");
    failed.loadError = "bad magic";
    assert.equal(modelState(failed), "failed");
  });
});
