import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DisposerStack } from "../../../src/disposers.js";

describe("DisposerStack", () => {
  test("runs disposers last acquired first, each once, even when called twice", async () => {
    const ran: string[] = [];
    const stack = new DisposerStack(() => assert.fail("no disposer throws"));
    for (const name of ["store", "engine", "listener"]) stack.push(name, () => void ran.push(name));
    await Promise.all([stack.disposeAll(), stack.disposeAll()]);
    assert.deepEqual(ran, ["listener", "engine", "store"]);
  });

  test("waits for each disposer before the next one", async () => {
    const ran: string[] = [];
    const stack = new DisposerStack(() => undefined);
    stack.push("pool", () => void ran.push("pool"));
    stack.push("slow drain", () => new Promise<void>((resolve) => setTimeout(() => (ran.push("slow drain"), resolve()), 20)));
    await stack.disposeAll();
    assert.deepEqual(ran, ["slow drain", "pool"]);
  });

  test("one that throws is reported and the rest still run", async () => {
    const ran: string[] = [];
    const errors: [string, string][] = [];
    const stack = new DisposerStack((name, err) => errors.push([name, (err as Error).message]));
    stack.push("pool", () => void ran.push("pool"));
    stack.push("stuck store", () => Promise.reject(new Error("disk gone")));
    stack.push("worker", () => {
      throw new Error("already dead");
    });
    await stack.disposeAll();
    assert.deepEqual(ran, ["pool"]);
    assert.deepEqual(errors, [
      ["worker", "already dead"],
      ["stuck store", "disk gone"],
    ]);
  });

  test("refuses to register a resource once teardown has begun", async () => {
    const stack = new DisposerStack(() => undefined);
    const done = stack.disposeAll();
    assert.throws(() => stack.push("late", () => undefined), /being torn down/);
    await done;
  });
});
