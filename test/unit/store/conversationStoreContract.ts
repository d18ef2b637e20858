// The ConversationStore contract (src/store/conversationStore.ts), run against
// every implementation: SQLite (sqliteConversationStore.test.ts) and
// PostgreSQL (postgres/conversationStore.test.ts). Responses and their input
// items, paging, conversations and items, tenant scoping, deletes that remove
// rows, the response TTL (invisible at once, purged by purgeExpired and by the
// timer), findItems, and reopening. What only one implementation has (pragmas,
// a backfill, bulk loads) stays in that implementation's own file.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import type { ConversationStore, Item, MessageItem, NewStoredResponse } from "../../../src/store/conversationStore.js";

export const DAY = 24 * 60 * 60;

export interface ConversationStoreOptions {
  responseTtlSeconds: number;
  nowSeconds: () => number;
  purgeIntervalMs?: number;
  onPurge?: (outcome: { deleted: number } | { error: unknown }) => void;
}

export interface ConversationStoreHarness {
  /** Empties the data before each test. */
  reset(): Promise<void>;
  /** A store over the data (opening it again sees what was committed before). */
  open(options: ConversationStoreOptions): Promise<ConversationStore>;
  /** A COUNT(*) straight from the tables; `?` placeholders. */
  count(sql: string, ...params: unknown[]): Promise<number>;
}

export const user = (id: string, text: string): MessageItem => ({
  type: "message",
  id,
  role: "user",
  status: "completed",
  content: [{ type: "input_text", text }],
});
export const assistant = (id: string, text: string): MessageItem => ({
  type: "message",
  id,
  role: "assistant",
  status: "completed",
  content: [{ type: "output_text", text, annotations: [], logprobs: [] }],
});
export const ids = (items: readonly Item[]) => items.map((i) => i.id);

export function describeConversationStoreContract(name: string, harness: ConversationStoreHarness): void {
  let store: ConversationStore;
  let clockSeconds: number;
  const open = (options: Partial<ConversationStoreOptions> = {}) => harness.open({ responseTtlSeconds: 30 * DAY, nowSeconds: () => clockSeconds, ...options });
  const count = (sql: string, ...params: unknown[]) => harness.count(sql, ...params);
  const response = (id: string, inputItems: MessageItem[], createdAtSeconds = clockSeconds): NewStoredResponse => ({
    id,
    createdAtSeconds,
    body: { id, object: "response", output: [assistant(`out_${id}`, "reply")] },
    inputItems,
  });

  beforeEach(async () => {
    clockSeconds = 1_700_000_000;
    await harness.reset();
    store = await open();
  });
  afterEach(async () => {
    await store.close();
  });

  describe(`${name}: reopening`, () => {
    test("what was committed is there after close and reopen; close() is idempotent", async () => {
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m1", "hi")]), conversation: null });
      await store.createConversation("acme", { id: "conv_1", createdAtSeconds: clockSeconds, metadata: { k: "v" } }, [user("c1", "hello")]);
      await store.close();
      await store.close();
      store = await open();
      assert.deepEqual((await store.getResponse("acme", "resp_1"))?.body.id, "resp_1");
      assert.deepEqual(ids((await store.getResponseInputItems("acme", "resp_1"))!), ["m1"]);
      assert.deepEqual(await store.getConversation("acme", "conv_1"), { id: "conv_1", createdAtSeconds: clockSeconds, metadata: { k: "v" } });
      assert.deepEqual(await store.getConversationItems("acme", "conv_1"), [user("c1", "hello")]);
    });

    test("refuses a negative or fractional TTL", async () => {
      await assert.rejects(async () => open({ responseTtlSeconds: -1 }), /whole number >= 0/);
      await assert.rejects(async () => open({ responseTtlSeconds: 1.5 }), /whole number >= 0/);
    });
  });

  describe(`${name}: responses`, () => {
    test("a committed response comes back verbatim, with its input items in order", async () => {
      const items = [user("m1", "a"), assistant("m2", "b"), user("m3", "c")];
      const r = response("resp_1", items);
      await store.commitResponse({ tenantId: "acme", response: r, conversation: null });
      assert.deepEqual(await store.getResponse("acme", "resp_1"), { id: "resp_1", createdAtSeconds: clockSeconds, body: r.body });
      assert.deepEqual(await store.getResponseInputItems("acme", "resp_1"), items);
      assert.equal(await store.getResponse("acme", "resp_2"), null);
      assert.equal(await store.getResponseInputItems("acme", "resp_2"), null);
    });

    test("input items page by limit, order and after, with has_more", async () => {
      const items = ["a", "b", "c", "d", "e"].map((x) => user(`m_${x}`, x));
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", items), conversation: null });
      const page = async (limit: number, order: "asc" | "desc", after: string | null) => {
        const p = await store.listResponseInputItems("acme", "resp_1", { limit, order, after });
        assert.ok(p && p.kind === "page");
        return { ids: ids(p.items), hasMore: p.hasMore };
      };
      assert.deepEqual(await page(2, "asc", null), { ids: ["m_a", "m_b"], hasMore: true });
      assert.deepEqual(await page(2, "asc", "m_b"), { ids: ["m_c", "m_d"], hasMore: true });
      assert.deepEqual(await page(2, "asc", "m_d"), { ids: ["m_e"], hasMore: false });
      assert.deepEqual(await page(3, "desc", null), { ids: ["m_e", "m_d", "m_c"], hasMore: true });
      assert.deepEqual(await page(3, "desc", "m_c"), { ids: ["m_b", "m_a"], hasMore: false });
      assert.deepEqual(await page(5, "asc", null), { ids: ["m_a", "m_b", "m_c", "m_d", "m_e"], hasMore: false });
      assert.deepEqual(await store.listResponseInputItems("acme", "resp_1", { limit: 2, order: "asc", after: "m_zz" }), { kind: "after_not_found" });
      assert.equal(await store.listResponseInputItems("acme", "resp_nope", { limit: 2, order: "asc", after: null }), null);
    });

    test("delete removes the response and its input item rows", async () => {
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m1", "a"), user("m2", "b")]), conversation: null });
      await store.commitResponse({ tenantId: "acme", response: response("resp_2", [user("m3", "c")]), conversation: null });
      assert.equal(await store.deleteResponse("acme", "resp_1"), true);
      assert.equal(await count("SELECT COUNT(*) FROM responses WHERE id = ?", "resp_1"), 0);
      assert.equal(await count("SELECT COUNT(*) FROM response_input_items WHERE response_id = ?", "resp_1"), 0);
      assert.equal(await store.getResponse("acme", "resp_1"), null);
      assert.equal(await store.deleteResponse("acme", "resp_1"), false);
      // The other response is untouched.
      assert.equal(await count("SELECT COUNT(*) FROM response_input_items WHERE response_id = ?", "resp_2"), 1);
    });

    test("another tenant sees nothing and deletes nothing", async () => {
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m1", "a")]), conversation: null });
      assert.equal(await store.getResponse("beta", "resp_1"), null);
      assert.equal(await store.getResponseInputItems("beta", "resp_1"), null);
      assert.equal(await store.listResponseInputItems("beta", "resp_1", { limit: 20, order: "desc", after: null }), null);
      assert.equal(await store.deleteResponse("beta", "resp_1"), false);
      assert.ok(await store.getResponse("acme", "resp_1"));
      assert.equal(await count("SELECT COUNT(*) FROM response_input_items WHERE response_id = ?", "resp_1"), 1);
    });

    test("the same id under two tenants is two responses", async () => {
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m1", "acme's")]), conversation: null });
      await store.commitResponse({ tenantId: "beta", response: response("resp_1", [user("m1", "beta's")]), conversation: null });
      assert.deepEqual((await store.getResponseInputItems("acme", "resp_1"))![0], user("m1", "acme's"));
      assert.deepEqual((await store.getResponseInputItems("beta", "resp_1"))![0], user("m1", "beta's"));
      await store.deleteResponse("beta", "resp_1");
      assert.ok(await store.getResponse("acme", "resp_1"));
    });

    test("a commit is all or nothing: a duplicate id leaves no half-written rows", async () => {
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m1", "a")]), conversation: null });
      await store.createConversation("acme", { id: "conv_1", createdAtSeconds: clockSeconds, metadata: {} }, []);
      await assert.rejects(
        store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m9", "b")]), conversation: { id: "conv_1", items: [user("m9", "b")] } }),
        /UNIQUE constraint failed|duplicate key/,
      );
      assert.deepEqual(await store.getConversationItems("acme", "conv_1"), []);
      assert.deepEqual(ids((await store.getResponseInputItems("acme", "resp_1"))!), ["m1"]);
    });
  });

  describe(`${name}: response retention`, () => {
    test("an expired response is invisible at once and its rows are removed by purgeExpired", async () => {
      await store.commitResponse({ tenantId: "acme", response: response("resp_old", [user("m1", "a")], clockSeconds), conversation: null });
      await store.commitResponse({ tenantId: "acme", response: response("resp_new", [user("m2", "b")], clockSeconds + DAY), conversation: null });
      clockSeconds += 30 * DAY; // resp_old is exactly 30 days old: expired; resp_new has a day left
      assert.equal(await store.getResponse("acme", "resp_old"), null);
      assert.equal(await store.getResponseInputItems("acme", "resp_old"), null);
      assert.equal(await store.listResponseInputItems("acme", "resp_old", { limit: 20, order: "desc", after: null }), null);
      assert.equal(await store.deleteResponse("acme", "resp_old"), false);
      assert.ok(await store.getResponse("acme", "resp_new"));
      // Invisible, but the rows are still there until the purge.
      assert.equal(await count("SELECT COUNT(*) FROM responses WHERE id = 'resp_old'"), 1);
      assert.equal(await store.purgeExpired(), 1);
      assert.equal(await count("SELECT COUNT(*) FROM responses WHERE id = 'resp_old'"), 0);
      assert.equal(await count("SELECT COUNT(*) FROM response_input_items WHERE response_id = 'resp_old'"), 0);
      assert.equal(await count("SELECT COUNT(*) FROM response_input_items WHERE response_id = 'resp_new'"), 1);
      assert.equal(await store.purgeExpired(), 0);
    });

    test("conversations are not subject to the response TTL", async () => {
      await store.createConversation("acme", { id: "conv_1", createdAtSeconds: clockSeconds, metadata: {} }, [user("c1", "hello")]);
      clockSeconds += 365 * DAY;
      await store.purgeExpired();
      assert.ok(await store.getConversation("acme", "conv_1"));
      assert.equal((await store.getConversationItems("acme", "conv_1"))!.length, 1);
    });

    test("TTL 0 keeps responses forever", async () => {
      await store.close();
      store = await open({ responseTtlSeconds: 0 });
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m1", "a")]), conversation: null });
      clockSeconds += 10_000 * DAY;
      assert.equal(await store.purgeExpired(), 0);
      assert.ok(await store.getResponse("acme", "resp_1"));
    });

    test("the timer purges expired responses on its own and stops at close", async () => {
      await store.close();
      const outcomes: unknown[] = [];
      store = await open({ purgeIntervalMs: 10, onPurge: (o) => outcomes.push(o) });
      await store.commitResponse({ tenantId: "acme", response: response("resp_1", [user("m1", "a")]), conversation: null });
      clockSeconds += 31 * DAY;
      const deadline = Date.now() + 5000;
      while ((await count("SELECT COUNT(*) FROM responses")) > 0) {
        assert.ok(Date.now() < deadline, "the timer never purged");
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(outcomes, [{ deleted: 1 }]);
      await store.close();
      const after = outcomes.length;
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(outcomes.length, after, "no purge runs after close (it would report an error on the closed database)");
    });
  });

  describe(`${name}: conversations`, () => {
    const conv = (id: string, metadata: Record<string, string> = {}) => ({ id, createdAtSeconds: clockSeconds, metadata });

    test("create with items, get, update metadata", async () => {
      const created = await store.createConversation("acme", conv("conv_1", { topic: "x" }), [user("c1", "a"), assistant("c2", "b")]);
      assert.deepEqual(created, conv("conv_1", { topic: "x" }));
      assert.deepEqual(await store.getConversation("acme", "conv_1"), created);
      assert.deepEqual(ids((await store.getConversationItems("acme", "conv_1"))!), ["c1", "c2"]);
      assert.deepEqual(await store.updateConversation("acme", "conv_1", { topic: "y" }), conv("conv_1", { topic: "y" }));
      assert.equal(await store.updateConversation("acme", "conv_nope", {}), null);
    });

    test("items: add, list in pages both ways, get one, delete one (its row is gone)", async () => {
      await store.createConversation("acme", conv("conv_1"), [user("c1", "a")]);
      assert.deepEqual(ids((await store.addConversationItems("acme", "conv_1", [assistant("c2", "b"), user("c3", "c")]))!), ["c2", "c3"]);
      assert.equal(await store.addConversationItems("acme", "conv_nope", [user("c9", "x")]), null);
      const page = await store.listConversationItems("acme", "conv_1", { limit: 2, order: "desc", after: null });
      assert.ok(page?.kind === "page");
      assert.deepEqual([ids(page.items), page.hasMore], [["c3", "c2"], true]);
      const next = await store.listConversationItems("acme", "conv_1", { limit: 2, order: "desc", after: "c2" });
      assert.ok(next?.kind === "page");
      assert.deepEqual([ids(next.items), next.hasMore], [["c1"], false]);
      assert.deepEqual(await store.getConversationItem("acme", "conv_1", "c2"), assistant("c2", "b"));
      assert.equal(await store.deleteConversationItem("acme", "conv_1", "c2"), true);
      assert.equal(await count("SELECT COUNT(*) FROM conversation_items WHERE item_id = 'c2'"), 0);
      assert.equal(await store.deleteConversationItem("acme", "conv_1", "c2"), false);
      assert.equal(await store.getConversationItem("acme", "conv_1", "c2"), null);
      assert.deepEqual(ids((await store.getConversationItems("acme", "conv_1"))!), ["c1", "c3"]);
      // Later items still come after the survivors.
      await store.addConversationItems("acme", "conv_1", [user("c4", "d")]);
      assert.deepEqual(ids((await store.getConversationItems("acme", "conv_1"))!), ["c1", "c3", "c4"]);
    });

    test("deleting a conversation deletes every item row", async () => {
      await store.createConversation("acme", conv("conv_1"), [user("c1", "a"), user("c2", "b")]);
      await store.createConversation("acme", conv("conv_2"), [user("d1", "a")]);
      assert.equal(await store.deleteConversation("acme", "conv_1"), true);
      assert.equal(await count("SELECT COUNT(*) FROM conversations WHERE id = 'conv_1'"), 0);
      assert.equal(await count("SELECT COUNT(*) FROM conversation_items WHERE conversation_id = 'conv_1'"), 0);
      assert.equal(await count("SELECT COUNT(*) FROM conversation_items WHERE conversation_id = 'conv_2'"), 1);
      assert.equal(await store.getConversation("acme", "conv_1"), null);
      assert.equal(await store.getConversationItems("acme", "conv_1"), null);
      assert.equal(await store.deleteConversation("acme", "conv_1"), false);
    });

    test("another tenant can neither read nor change a conversation or its items", async () => {
      await store.createConversation("acme", conv("conv_1", { k: "v" }), [user("c1", "a")]);
      assert.equal(await store.getConversation("beta", "conv_1"), null);
      assert.equal(await store.getConversationItems("beta", "conv_1"), null);
      assert.equal(await store.listConversationItems("beta", "conv_1", { limit: 20, order: "asc", after: null }), null);
      assert.equal(await store.getConversationItem("beta", "conv_1", "c1"), null);
      assert.equal(await store.updateConversation("beta", "conv_1", { k: "stolen" }), null);
      assert.equal(await store.addConversationItems("beta", "conv_1", [user("x1", "injected")]), null);
      assert.equal(await store.deleteConversationItem("beta", "conv_1", "c1"), false);
      assert.equal(await store.deleteConversation("beta", "conv_1"), false);
      await store.commitResponse({ tenantId: "beta", response: null, conversation: { id: "conv_1", items: [user("x2", "injected")] } });
      assert.deepEqual(await store.getConversation("acme", "conv_1"), conv("conv_1", { k: "v" }));
      assert.deepEqual(await store.getConversationItems("acme", "conv_1"), [user("c1", "a")]);
    });

    test("a committed response appends its items to its conversation, stored or not", async () => {
      await store.createConversation("acme", conv("conv_1"), [user("c1", "a")]);
      await store.commitResponse({
        tenantId: "acme",
        response: response("resp_1", [user("c1", "a"), user("m2", "b")]),
        conversation: { id: "conv_1", items: [user("m2", "b"), assistant("o2", "c")] },
      });
      await store.commitResponse({ tenantId: "acme", response: null, conversation: { id: "conv_1", items: [user("m3", "d"), assistant("o3", "e")] } });
      assert.deepEqual(ids((await store.getConversationItems("acme", "conv_1"))!), ["c1", "m2", "o2", "m3", "o3"]);
      assert.equal(await count("SELECT COUNT(*) FROM responses"), 1, "store:false kept no response");
    });

    test("deleteTenantData removes every row of that tenant and no other's", async () => {
      for (const tenant of ["acme", "beta"]) {
        await store.createConversation(tenant, conv("conv_1"), [user("c1", "a")]);
        await store.commitResponse({
          tenantId: tenant,
          response: response("resp_1", [user("m1", "a")]),
          conversation: { id: "conv_1", items: [user("m1", "a")] },
        });
      }
      await store.deleteTenantData("acme");
      const tables = ["responses", "response_input_items", "conversations", "conversation_items"];
      assert.deepEqual(await Promise.all(tables.map((t) => count(`SELECT COUNT(*) FROM ${t} WHERE tenant_id = 'acme'`))), [0, 0, 0, 0]);
      assert.deepEqual(await Promise.all(tables.map((t) => count(`SELECT COUNT(*) FROM ${t} WHERE tenant_id = 'beta'`))), [1, 1, 1, 2]);
    });

    test("a response whose conversation was deleted meanwhile is still stored", async () => {
      await store.createConversation("acme", conv("conv_1"), []);
      await store.deleteConversation("acme", "conv_1");
      await store.commitResponse({
        tenantId: "acme",
        response: response("resp_1", [user("m1", "a")]),
        conversation: { id: "conv_1", items: [user("m1", "a")] },
      });
      assert.ok(await store.getResponse("acme", "resp_1"));
      assert.equal(await count("SELECT COUNT(*) FROM conversation_items"), 0);
    });
  });

  describe(`${name}: findItems (item_reference)`, () => {
    test("finds a response's output and input items and a conversation's items, for their tenant only", async () => {
      await store.commitResponse({ tenantId: "a", response: response("resp_1", [user("in_1", "hi")]), conversation: null });
      await store.createConversation("a", { id: "conv_1", createdAtSeconds: clockSeconds, metadata: {} }, [user("conv_item", "x")]);
      const found = await store.findItems("a", ["out_resp_1", "in_1", "conv_item", "nope"]);
      assert.deepEqual([...found.keys()].sort(), ["conv_item", "in_1", "out_resp_1"]);
      assert.deepEqual(found.get("out_resp_1"), assistant("out_resp_1", "reply"));
      assert.equal((await store.findItems("b", ["out_resp_1", "in_1", "conv_item"])).size, 0);
    });

    test("a deleted or expired response's items are not found", async () => {
      await store.commitResponse({ tenantId: "a", response: response("resp_old", [], clockSeconds - 31 * DAY), conversation: null });
      await store.commitResponse({ tenantId: "a", response: response("resp_del", []), conversation: null });
      await store.deleteResponse("a", "resp_del");
      assert.equal((await store.findItems("a", ["out_resp_old", "out_resp_del"])).size, 0);
      assert.equal(await count("SELECT count(*) FROM response_output_items WHERE response_id = 'resp_del'"), 0);
    });
  });
}
