// SqliteBackgroundStore (src/store/sqliteBackgroundStore.ts) on a real database
// in a temp dir, next to the conversation store whose responses it extends:
// transitions only from queued / in progress (a cancel and a finish cannot
// both win), events in order after any sequence number, output and
// conversation items written with the end, tenant scoping, rows gone with
// their response (delete, tenant deletion, expiry), and the start-up sweep.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import type { JsonObject, MessageItem } from "../../../src/store/conversationStore.js";
import type { StoredEvent } from "../../../src/store/backgroundStore.js";
import { SqliteBackgroundStore } from "../../../src/store/sqliteBackgroundStore.js";
import { SqliteConversationStore } from "../../../src/store/sqliteConversationStore.js";

const DAY = 24 * 60 * 60;
let dir: string;
let clockSeconds: number;
let conversations: SqliteConversationStore;
let store: SqliteBackgroundStore;

const open = () => {
  conversations = SqliteConversationStore.open(path.join(dir, "data"), { responseTtlSeconds: DAY, nowSeconds: () => clockSeconds });
  store = new SqliteBackgroundStore(conversations.db);
};
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-bg-store-test-"));
  clockSeconds = 1_700_000_000;
  open();
});
afterEach(async () => {
  await conversations.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const user: MessageItem = { type: "message", id: "msg_in", role: "user", status: "completed", content: [{ type: "input_text", text: "hi" }] };
const answer: MessageItem = { type: "message", id: "msg_out", role: "assistant", status: "completed", content: [{ type: "output_text", text: "hello", annotations: [], logprobs: [] }] };
const body = (id: string, status: string, output: unknown[] = []): JsonObject => ({ id, object: "response", status, output, background: true });
const event = (n: number, type = "response.output_text.delta"): StoredEvent => ({ sequenceNumber: n, type, data: { type, sequence_number: n } });

async function createQueued(tenant: string, id: string): Promise<void> {
  await store.create(tenant, { id, createdAtSeconds: clockSeconds, body: body(id, "queued"), inputItems: [user] }, [event(0, "response.created"), event(1, "response.queued")]);
}

describe("SqliteBackgroundStore", () => {
  test("a created response is a stored response, queued, with its input items and first events", async () => {
    await createQueued("t1", "resp_1");
    assert.equal(await store.status("t1", "resp_1"), "queued");
    assert.equal(((await conversations.getResponse("t1", "resp_1"))!.body as { status: string }).status, "queued");
    assert.deepEqual(await conversations.getResponseInputItems("t1", "resp_1"), [user]);
    assert.deepEqual((await store.events("t1", "resp_1", -1)).map((e) => e.type), ["response.created", "response.queued"]);
  });

  test("update and finish act only while queued or in progress; events come back in order after any sequence number", async () => {
    await createQueued("t1", "resp_1");
    assert.equal(await store.update("t1", "resp_1", { events: [event(2, "response.in_progress")], body: body("resp_1", "in_progress"), status: "in_progress" }), true);
    assert.equal(await store.status("t1", "resp_1"), "in_progress");
    assert.equal(await store.update("t1", "resp_1", { events: [event(3), event(4)] }), true);
    const done = body("resp_1", "completed", [answer]);
    assert.equal(await store.finish({ tenantId: "t1", id: "resp_1", status: "completed", body: done, events: [event(5), event(6, "response.completed")], outputItems: [answer], conversation: null }), true);
    assert.deepEqual((await store.events("t1", "resp_1", 3)).map((e) => e.sequenceNumber), [4, 5, 6]);
    assert.deepEqual(await store.events("t1", "resp_1", 6), []);
    // Terminal: a late cancel, update or second finish writes nothing.
    assert.equal(await store.finish({ tenantId: "t1", id: "resp_1", status: "cancelled", body: body("resp_1", "cancelled"), events: [], outputItems: [], conversation: null }), false);
    assert.equal(await store.update("t1", "resp_1", { events: [event(7)] }), false);
    assert.equal(await store.status("t1", "resp_1"), "completed");
    assert.deepEqual((await conversations.getResponse("t1", "resp_1"))!.body, done);
    assert.equal((await store.events("t1", "resp_1", -1)).length, 7);
    // Its output items can be referenced, as a foreground response's.
    assert.deepEqual([...(await conversations.findItems("t1", ["msg_out"])).values()], [answer]);
  });

  test("finish appends to the conversation (when it still exists); a cancel stores the cancelled object only", async () => {
    await conversations.createConversation("t1", { id: "conv_1", createdAtSeconds: clockSeconds, metadata: {} }, []);
    await createQueued("t1", "resp_1");
    await createQueued("t1", "resp_2");
    await store.finish({ tenantId: "t1", id: "resp_1", status: "completed", body: body("resp_1", "completed"), events: [], outputItems: [answer], conversation: { id: "conv_1", items: [user, answer] } });
    assert.deepEqual(await conversations.getConversationItems("t1", "conv_1"), [user, answer]);
    assert.equal(await store.finish({ tenantId: "t1", id: "resp_2", status: "cancelled", body: body("resp_2", "cancelled"), events: [], outputItems: [], conversation: null }), true);
    assert.equal(await store.status("t1", "resp_2"), "cancelled");
  });

  test("tenant-scoped: another tenant's id is none", async () => {
    await createQueued("t1", "resp_1");
    assert.equal(await store.status("t2", "resp_1"), null);
    assert.deepEqual(await store.events("t2", "resp_1", -1), []);
    assert.equal(await store.update("t2", "resp_1", { events: [event(2)] }), false);
    assert.equal(await store.finish({ tenantId: "t2", id: "resp_1", status: "cancelled", body: body("resp_1", "cancelled"), events: [], outputItems: [], conversation: null }), false);
    assert.equal(await store.status("t1", "resp_1"), "queued");
  });

  test("status and events go with their response: delete, tenant deletion, expiry", async () => {
    await createQueued("t1", "resp_1");
    await createQueued("t2", "resp_2");
    await createQueued("t3", "resp_3");
    await conversations.deleteResponse("t1", "resp_1");
    await conversations.deleteTenantData("t2");
    clockSeconds += DAY + 1;
    await conversations.purgeExpired();
    const db = conversations.db;
    assert.equal(db.prepare("SELECT COUNT(*) FROM background_responses").pluck().get(), 0);
    assert.equal(db.prepare("SELECT COUNT(*) FROM response_events").pluck().get(), 0);
    // A running response whose row is gone cannot be updated (the runner stops it).
    assert.equal(await store.update("t1", "resp_1", { events: [event(2)] }), false);
  });

  test("failUnfinished: queued and in-progress responses become what the outcome says, after their last stored event; finished ones are untouched; it survives a reopen", async () => {
    await createQueued("t1", "resp_q");
    await createQueued("t1", "resp_r");
    await store.update("t1", "resp_r", { events: [event(2, "response.in_progress"), event(3)], body: body("resp_r", "in_progress"), status: "in_progress" });
    await createQueued("t1", "resp_done");
    await store.finish({ tenantId: "t1", id: "resp_done", status: "completed", body: body("resp_done", "completed"), events: [], outputItems: [], conversation: null });
    await conversations.close();
    open();
    const seen: string[] = [];
    const n = await store.failUnfinished(({ body: b, status, nextSequenceNumber }) => {
      seen.push(`${b.id as string}:${status}:${nextSequenceNumber}`);
      const failed = { ...b, status: "failed" };
      return { body: failed, event: { sequenceNumber: nextSequenceNumber, type: "response.failed", data: { type: "response.failed", response: failed, sequence_number: nextSequenceNumber } } };
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
});
