// src/middleware/jsonLimits.ts and jsonBody.ts: the raw-body scan, the
// parsed-value walk, and the /v1 body middleware mounted on a real express app
// the way app.ts mounts it, parsing inline and on the worker thread.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import express from "express";
import { ApiError, errorHandler } from "../../../../src/errors.js";
import { JsonParsePool, jsonBody } from "../../../../src/middleware/jsonBody.js";
import { assertJsonLimits, jsonNestingDepth, MAX_JSON_DEPTH } from "../../../../src/middleware/jsonLimits.js";

const LIMITS = { maxDepth: MAX_JSON_DEPTH, maxLogitBiasEntries: 1024 };

const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

describe("jsonLimits", () => {
  test("jsonNestingDepth counts brackets outside strings only", () => {
    assert.equal(jsonNestingDepth(Buffer.from('{"a":[1,{"b":2}]}')), 3);
    assert.equal(jsonNestingDepth(Buffer.from('{"a":"[[[[\\"[[["}')), 1);
    assert.equal(jsonNestingDepth(Buffer.from("1")), 0);
    assert.equal(jsonNestingDepth(Buffer.from(deep(100_000)), 64), 65, "stops just past the limit");
  });

  test("assertJsonLimits refuses depth past the limit and __proto__ keys, by path", () => {
    assert.doesNotThrow(() => assertJsonLimits(JSON.parse(deep(MAX_JSON_DEPTH))));
    assert.throws(
      () => assertJsonLimits(JSON.parse(deep(MAX_JSON_DEPTH + 1))),
      (e) => e instanceof ApiError && e.code === "invalid_body",
    );
    assert.throws(
      () => assertJsonLimits(JSON.parse(deep(1_000_000))),
      (e) => e instanceof ApiError && e.status === 400,
    );
    assert.throws(
      () => assertJsonLimits(JSON.parse('{"a":[{"b":{"__proto__":1}}]}')),
      (e) => e instanceof ApiError && e.code === "invalid_value" && e.param === "a[0].b.__proto__",
    );
  });

  for (const onWorker of [false, true]) {
    test(`mounted as app.ts mounts it, parsed ${onWorker ? "on the worker thread" : "inline"}: bad bodies are 400s in OpenAI's shape`, async () => {
      const pool = onWorker ? new JsonParsePool(LIMITS) : null;
      const app = express();
      app.use(jsonBody({ limit: 1024 * 1024, limits: LIMITS, pool, tenantOf: () => "t", workerMinBytes: onWorker ? 0 : Infinity }));
      app.post("/", (req, res) => res.json({ ok: true, body: req.body as unknown }));
      app.use(errorHandler(() => undefined));
      const server = app.listen(0, "127.0.0.1");
      await new Promise((r) => server.once("listening", r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const post = async (body: Uint8Array | string, contentType = "application/json") => {
        const res = await fetch(url, { method: "POST", headers: { "content-type": contentType }, body });
        return {
          status: res.status,
          body: (await res.json()) as { body?: unknown; error?: { code: string; type: string; message: string; param: string | null } },
        };
      };
      try {
        const bad = await post(Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xc3, 0x28]), Buffer.from('"}')]));
        assert.equal(bad.status, 400);
        assert.equal(bad.body.error?.code, "invalid_json");
        assert.equal(bad.body.error?.type, "invalid_request_error");
        assert.match(bad.body.error?.message ?? "", /UTF-8/);
        const tooDeep = await post(`{"a":${deep(10_000)}}`);
        assert.equal(tooDeep.status, 400);
        assert.equal(tooDeep.body.error?.code, "invalid_body");
        for (const notJson of ['{"a":', '"a string"', "12", "nul"]) {
          const r = await post(notJson);
          assert.equal(r.status, 400, notJson);
          assert.equal(r.body.error?.code, "invalid_json", notJson);
        }
        const bias = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [String(i), 1]));
        const longBias = await post(JSON.stringify({ logit_bias: bias }));
        assert.equal(longBias.status, 400);
        assert.equal(longBias.body.error?.param, "logit_bias");
        const proto = await post('{"a":{"__proto__":1}}');
        assert.equal(proto.body.error?.param, "a.__proto__");
        const ok = await post('{"a":"h\\u00e9 [[[ ]", "b": [1, {"c": null}]}');
        assert.equal(ok.status, 200);
        assert.deepEqual(ok.body.body, { a: "h\u00e9 [[[ ]", b: [1, { c: null }] });
        const empty = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "content-length": "0" } });
        assert.deepEqual(((await empty.json()) as { body: unknown }).body, {});
        assert.equal((await post("{}", "application/json; charset=latin1")).status, 415);
        assert.equal((await post("{}", "application/json; charset=UTF-8")).status, 200);
        const huge = await post(JSON.stringify({ a: "x".repeat(1024 * 1024) }));
        assert.equal(huge.status, 413);
      } finally {
        await new Promise((r) => server.close(r));
        await pool?.close();
      }
    });
  }

  test("the parse worker takes tenants in turn: one tenant's queue of large bodies does not hold another's", async () => {
    const pool = new JsonParsePool(LIMITS);
    try {
      const big = (tag: string) => Buffer.from(JSON.stringify({ tag, pad: "x".repeat(2 * 1024 * 1024) }));
      const order: string[] = [];
      const track = (tenant: string, tag: string) => pool.parse(tenant, big(tag)).then((v) => void order.push((v as { tag: string }).tag));
      const all = [track("attacker", "a1"), track("attacker", "a2"), track("attacker", "a3"), track("attacker", "a4"), track("victim", "v1")];
      await Promise.all(all);
      // a1 was already on the worker when v1 arrived; v1 goes next, not after a4.
      assert.deepEqual(order, ["a1", "v1", "a2", "a3", "a4"]);
      await assert.rejects(pool.parse("t", Buffer.from('{"a":')), (e) => e instanceof ApiError && e.code === "invalid_json");
    } finally {
      await pool.close();
    }
    // After close, bodies are parsed inline (a request racing the shutdown still gets an answer).
    assert.deepEqual(await pool.parse("t", Buffer.from('{"a":1}')), { a: 1 });
  });
});
