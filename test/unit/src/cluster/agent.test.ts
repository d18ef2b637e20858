// The HAProxy agent's decision (a pure function) and its TCP answer.
import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import {
  AGENT_STATE_ONLY,
  agentDecision,
  formatAgentReply,
  SATURATED_WEIGHT_PERCENT,
  startAgent,
  stateOnly,
  type ModelLoad,
  type ReplicaLoad,
} from "../../../../src/cluster/agent.js";

const model = (o: Partial<ModelLoad> = {}): ModelLoad => ({ state: "ready", slots: 4, running: 0, waiting: 0, maxQueued: 32, ...o });
const replica = (models: ModelLoad[], accepting = true): ReplicaLoad => ({ accepting, models });
const weightOf = (load: ReplicaLoad): number => {
  const d = agentDecision(load);
  assert.equal(d.kind, "ready", JSON.stringify(d));
  return d.kind === "ready" ? d.weightPercent : NaN;
};

describe("agentDecision", () => {
  test("an idle replica takes full weight", () => {
    assert.deepEqual(agentDecision(replica([model()])), { kind: "ready", weightPercent: 100 });
  });

  test("drains while shutting down, while a model loads or restarts, and when no model serves", () => {
    assert.deepEqual(agentDecision(replica([model()], false)), { kind: "drain", why: "shutting-down" });
    assert.deepEqual(agentDecision(replica([model({ state: "loading" })])), { kind: "drain", why: "loading" });
    assert.deepEqual(agentDecision(replica([model(), model({ state: "restarting" })])), { kind: "drain", why: "loading" });
    assert.deepEqual(agentDecision(replica([model({ state: "failed" })])), { kind: "drain", why: "no-model" });
    assert.deepEqual(agentDecision(replica([model({ state: "stopped" })])), { kind: "drain", why: "no-model" });
    assert.deepEqual(agentDecision(replica([])), { kind: "drain", why: "no-model" });
    // Shutting down wins over everything else.
    assert.deepEqual(agentDecision(replica([model({ state: "loading" })], false)), { kind: "drain", why: "shutting-down" });
  });

  test("a model that failed to load does not drain a replica whose other model serves", () => {
    assert.equal(weightOf(replica([model({ state: "failed" }), model()])), 100);
  });

  test("the weight falls with every request, from 100 % idle through the saturated weight to 1 % with a full queue, never 0", () => {
    const slots = 4;
    const maxQueued = 8;
    const weights: number[] = [];
    for (let demand = 0; demand <= slots + maxQueued + 3; demand++) {
      const running = Math.min(demand, slots);
      weights.push(weightOf(replica([model({ slots, maxQueued, running, waiting: demand - running })])));
    }
    assert.equal(weights[0], 100);
    assert.equal(weights[slots], SATURATED_WEIGHT_PERCENT, "every slot taken, nothing queued");
    for (let i = 1; i < weights.length; i++) assert.ok(weights[i]! <= weights[i - 1]!, `not monotone at ${i}: ${weights.join(",")}`);
    for (let i = 1; i <= slots; i++) assert.ok(weights[i]! < weights[i - 1]!, `a slot taken must lower the weight: ${weights.join(",")}`);
    assert.ok(weights[slots - 1]! > SATURATED_WEIGHT_PERCENT, "one free slot is worth more than none");
    assert.equal(weights.at(-1), 1, "a full queue still answers 1 %, not 0");
    assert.ok(weights.every((w) => w >= 1 && w <= 100 && Number.isInteger(w)));
  });

  test("waiting requests count like running ones (they want a slot), and the load is summed over the ready models", () => {
    assert.equal(weightOf(replica([model({ running: 1, waiting: 1 })])), weightOf(replica([model({ running: 2 })])));
    // Two 4-slot models, 2 busy in one: 2 of 8 taken, the same as 1 of 4.
    assert.equal(weightOf(replica([model({ running: 2 }), model()])), weightOf(replica([model({ running: 1 })])));
    // A failed model's slots are not capacity.
    assert.equal(weightOf(replica([model({ running: 2 }), model({ state: "failed" })])), weightOf(replica([model({ running: 2 })])));
  });

  test("max-queued 0: saturated means the saturated weight, one more means 1 %", () => {
    assert.equal(weightOf(replica([model({ running: 4, maxQueued: 0 })])), SATURATED_WEIGHT_PERCENT);
    assert.equal(weightOf(replica([model({ running: 4, waiting: 1, maxQueued: 0 })])), 1);
  });
});

describe("formatAgentReply", () => {
  test("HAProxy's agent words: drain, or ready with a weight (ready lifts an earlier drain)", () => {
    assert.equal(formatAgentReply({ kind: "drain", why: "loading" }), "drain\n");
    assert.equal(formatAgentReply({ kind: "ready", weightPercent: 60 }), "up ready 60%\n");
  });
});

describe("stateOnly", () => {
  test("keeps a drain, and turns any weight into 100 %", () => {
    assert.deepEqual(stateOnly({ kind: "drain", why: "loading" }), { kind: "drain", why: "loading" });
    assert.deepEqual(stateOnly({ kind: "ready", weightPercent: 7 }), { kind: "ready", weightPercent: 100 });
  });
});

describe("startAgent", () => {
  const ask = (port: number, send?: string) =>
    new Promise<string>((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1", () => {
        if (send !== undefined) s.write(send);
      });
      let text = "";
      s.on("data", (d) => (text += d.toString()));
      s.on("end", () => resolve(text));
      s.on("error", reject);
    });

  test("answers each connection with the current decision and closes it; close() stops listening", async () => {
    let load = replica([model({ state: "loading" })]);
    const agent = await startAgent("127.0.0.1", 0, () => load);
    try {
      assert.ok(agent.port > 0);
      assert.equal(await ask(agent.port), "drain\n");
      load = replica([model({ running: 2 })]);
      assert.equal(await ask(agent.port), `up ready ${weightOf(load)}%\n`);
      assert.ok(weightOf(load) < 100);
      // HAProxy's agent-send for a hashing backend: the state only.
      assert.equal(await ask(agent.port, `${AGENT_STATE_ONLY}\n`), "up ready 100%\n");
      assert.equal(await ask(agent.port, "something else\n"), `up ready ${weightOf(load)}%\n`);
      load = replica([model({ running: 2 })], false);
      assert.equal(await ask(agent.port, `${AGENT_STATE_ONLY}\n`), "drain\n");
      load = replica([model()]);
      // A peer that resets at once costs nothing.
      const rude = net.connect(agent.port, "127.0.0.1", () => rude.resetAndDestroy());
      await new Promise((r) => setTimeout(r, 50));
      assert.match(await ask(agent.port), /^up ready \d+%\n$/);
    } finally {
      await agent.close();
    }
    await assert.rejects(ask(agent.port), /ECONNREFUSED/);
  });

  test("a port in use fails the start", async () => {
    const agent = await startAgent("127.0.0.1", 0, () => replica([model()]));
    try {
      await assert.rejects(
        startAgent("127.0.0.1", agent.port, () => replica([model()])),
        /EADDRINUSE/,
      );
    } finally {
      await agent.close();
    }
  });
});
