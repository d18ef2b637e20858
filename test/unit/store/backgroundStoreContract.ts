// The BackgroundStore contract (src/store/backgroundStore.ts), run against
// every implementation: SQLite (sqliteBackgroundStore.test.ts) and PostgreSQL
// (postgres/backgroundStore.test.ts), each next to the conversation store whose
// responses it extends: transitions only from queued / in progress (a cancel
// and a finish cannot both win), events in order after any sequence number,
// output and conversation items written with the end, tenant scoping, rows
// gone with their response (delete, tenant deletion, expiry), and the sweep of
// what a process that is gone left unfinished. What only one implementation
// has (PostgreSQL's owners and leases) stays in that implementation's file.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import type { ConversationStore, JsonObject, MessageItem } from "../../../src/store/conversationStore.js";
import type { BackgroundStore, StoredEvent } from "../../../src/store/backgroundStore.js";

export const DAY = 24 * 60 * 60;

export interface BackgroundStores {
  conversations: ConversationStore;
  store: BackgroundStore;
}

export interface BackgroundStoreHarness {
  /** Empties the data before each test. */
  reset(): Promise<void>;
  /** Both stores over the data, with the response TTL and clock given. */
  open(options: { responseTtlSeconds: number; nowSeconds: () => number }): Promise<BackgroundStores>;
  /** The process that opened `stores` is gone without finishing its work (kill -9): closes them as such a death would leave them. */
  die(stores: BackgroundStores): Promise<void>;
  /** Closes both, cleanly. */
  close(stores: BackgroundStores): Promise<void>;
  /** Rows in a table, counted straight from the database. */
  count(table: "background_responses" | "response_events"): Promise<number>;
}

export const user: MessageItem = { type: "message", id: "msg_in", role: "user", status: "completed", content: [{ type: "input_text", text: "hi" }] };
export const answer: MessageItem = {
  type: "message",
  id: "msg_out",
  role: "assistant",
  status: "completed",
  content: [{ type: "output_text", text: "hello", annotations: [], logprobs: [] }],
};
export const body = (id: string, status: string, output: unknown[] = []): JsonObject => ({ id, object: "response", status, output, background: true });
export const event = (n: number, type = "response.output_text.delta"): StoredEvent => ({ sequenceNumber: n, type, data: { type, sequence_number: n } });

export async function createQueuedIn(store: BackgroundStore, tenant: string, id: string, clockSeconds = 1_700_000_000): Promise<void> {
  await store.create(tenant, { id, createdAtSeconds: clockSeconds, body: body(id, "queued"), inputItems: [user] }, [
    event(0, "response.created"),
    event(1, "response.queued"),
  ]);
}

export function describeBackgroundStoreContract(name: string, harness: BackgroundStoreHarness): void {
  let clockSeconds: number;
  let stores: BackgroundStores;
  let conversations: ConversationStore;
  let store: BackgroundStore;
  const open = async () => {
    stores = await harness.open({ responseTtlSeconds: DAY, nowSeconds: () => clockSeconds });
    ({ conversations, store } = stores);
  };
  const createQueued = (tenant: string, id: string) => createQueuedIn(store, tenant, id, clockSeconds);
  beforeEach(async () => {
    clockSeconds = 1_700_000_000;
    await harness.reset();
    await open();
  });
  afterEach(async () => {
    await harness.close(stores);
  });

  test(`${name}: a created response is a stored response, queued, with its input items and first events`, async () => {
    await createQueued("t1", "resp_1");
    assert.equal(await store.status("t1", "resp_1"), "queued");
    assert.equal(((await conversations.getResponse("t1", "resp_1"))!.body as { status: string }).status, "queued");
    assert.deepEqual(await conversations.getResponseInputItems("t1", "resp_1"), [user]);
    assert.deepEqual(
      (await store.events("t1", "resp_1", -1)).map((e) => e.type),
      ["response.created", "response.queued"],
    );
  });

  test(`${name}: update and finish act only while queued or in progress; events come back in order after any sequence number`, async () => {
    await createQueued("t1", "resp_1");
    assert.equal(
      await store.update("t1", "resp_1", { events: [event(2, "response.in_progress")], body: body("resp_1", "in_progress"), status: "in_progress" }),
      true,
    );
    assert.equal(await store.status("t1", "resp_1"), "in_progress");
    assert.equal(await store.update("t1", "resp_1", { events: [event(3), event(4)] }), true);
    const done = body("resp_1", "completed", [answer]);
    assert.equal(
      await store.finish({
        tenantId: "t1",
        id: "resp_1",
        status: "completed",
        body: done,
        events: [event(5), event(6, "response.completed")],
        outputItems: [answer],
        conversation: null,
      }),
      true,
    );
    assert.deepEqual(
      (await store.events("t1", "resp_1", 3)).map((e) => e.sequenceNumber),
      [4, 5, 6],
    );
    assert.deepEqual(await store.events("t1", "resp_1", 6), []);
    // Terminal: a late cancel, update or second finish writes nothing.
    assert.equal(
      await store.finish({
        tenantId: "t1",
        id: "resp_1",
        status: "cancelled",
        body: body("resp_1", "cancelled"),
        events: [],
        outputItems: [],
        conversation: null,
      }),
      false,
    );
    assert.equal(await store.update("t1", "resp_1", { events: [event(7)] }), false);
    assert.equal(await store.status("t1", "resp_1"), "completed");
    assert.deepEqual((await conversations.getResponse("t1", "resp_1"))!.body, done);
    assert.equal((await store.events("t1", "resp_1", -1)).length, 7);
    // Its output items can be referenced, as a foreground response's.
    assert.deepEqual([...(await conversations.findItems("t1", ["msg_out"])).values()], [answer]);
  });

  test(`${name}: finish appends to the conversation (when it still exists); a cancel stores the cancelled object only`, async () => {
    await conversations.createConversation("t1", { id: "conv_1", createdAtSeconds: clockSeconds, metadata: {} }, []);
    await createQueued("t1", "resp_1");
    await createQueued("t1", "resp_2");
    await store.finish({
      tenantId: "t1",
      id: "resp_1",
      status: "completed",
      body: body("resp_1", "completed"),
      events: [],
      outputItems: [answer],
      conversation: { id: "conv_1", items: [user, answer] },
    });
    assert.deepEqual(await conversations.getConversationItems("t1", "conv_1"), [user, answer]);
    assert.equal(
      await store.finish({
        tenantId: "t1",
        id: "resp_2",
        status: "cancelled",
        body: body("resp_2", "cancelled"),
        events: [],
        outputItems: [],
        conversation: null,
      }),
      true,
    );
    assert.equal(await store.status("t1", "resp_2"), "cancelled");
  });

  test(`${name}: tenant-scoped: another tenant's id is none`, async () => {
    await createQueued("t1", "resp_1");
    assert.equal(await store.status("t2", "resp_1"), null);
    assert.deepEqual(await store.events("t2", "resp_1", -1), []);
    assert.equal(await store.update("t2", "resp_1", { events: [event(2)] }), false);
    assert.equal(
      await store.finish({
        tenantId: "t2",
        id: "resp_1",
        status: "cancelled",
        body: body("resp_1", "cancelled"),
        events: [],
        outputItems: [],
        conversation: null,
      }),
      false,
    );
    assert.equal(await store.status("t1", "resp_1"), "queued");
  });

  test(`${name}: status and events go with their response: delete, tenant deletion, expiry`, async () => {
    await createQueued("t1", "resp_1");
    await createQueued("t2", "resp_2");
    await createQueued("t3", "resp_3");
    await conversations.deleteResponse("t1", "resp_1");
    await conversations.deleteTenantData("t2");
    clockSeconds += DAY + 1;
    await conversations.purgeExpired();
    assert.equal(await harness.count("background_responses"), 0);
    assert.equal(await harness.count("response_events"), 0);
    // A running response whose row is gone cannot be updated (the runner stops it).
    assert.equal(await store.update("t1", "resp_1", { events: [event(2)] }), false);
  });

  test(`${name}: failUnfinished: queued and in-progress responses become what the outcome says, after their last stored event; finished ones are untouched; after its process died`, async () => {
    await createQueued("t1", "resp_q");
    await createQueued("t1", "resp_r");
    await store.update("t1", "resp_r", { events: [event(2, "response.in_progress"), event(3)], body: body("resp_r", "in_progress"), status: "in_progress" });
    await createQueued("t1", "resp_done");
    await store.finish({
      tenantId: "t1",
      id: "resp_done",
      status: "completed",
      body: body("resp_done", "completed"),
      events: [],
      outputItems: [],
      conversation: null,
    });
    // Its process dies; the next one sweeps.
    await harness.die(stores);
    await open();
    const seen: string[] = [];
    const n = await store.failUnfinished(({ body: b, status, nextSequenceNumber }) => {
      seen.push(`${b.id as string}:${status}:${nextSequenceNumber}`);
      const failed = { ...b, status: "failed" };
      return {
        body: failed,
        event: {
          sequenceNumber: nextSequenceNumber,
          type: "response.failed",
          data: { type: "response.failed", response: failed, sequence_number: nextSequenceNumber },
        },
      };
    });
    assert.equal(n, 2);
    assert.deepEqual(seen.sort(), ["resp_q:queued:2", "resp_r:in_progress:4"]);
    for (const id of ["resp_q", "resp_r"]) {
      assert.equal(await store.status("t1", id), "failed");
      assert.equal(((await conversations.getResponse("t1", id))!.body as { status: string }).status, "failed");
      assert.equal((await store.events("t1", id, -1)).at(-1)!.type, "response.failed");
    }
    assert.equal(await store.status("t1", "resp_done"), "completed");
    assert.equal(await store.failUnfinished(() => assert.fail("nothing is left unfinished")), 0);
  });
}
