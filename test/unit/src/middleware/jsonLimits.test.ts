// src/middleware/jsonLimits.ts: the raw-body scan, the parsed-value walk, and the
// verify hook mounted on a real express.json() the way app.ts would mount it.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import express from "express";
import { ApiError, errorHandler } from "../../../../src/errors.js";
import { assertJsonLimits, jsonBodyVerify, jsonNestingDepth, MAX_JSON_DEPTH } from "../../../../src/middleware/jsonLimits.js";

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
    assert.throws(() => assertJsonLimits(JSON.parse(deep(MAX_JSON_DEPTH + 1))), (e) => e instanceof ApiError && e.code === "invalid_body");
    assert.throws(() => assertJsonLimits(JSON.parse(deep(1_000_000))), (e) => e instanceof ApiError && e.status === 400);
    assert.throws(
      () => assertJsonLimits(JSON.parse('{"a":[{"b":{"__proto__":1}}]}')),
      (e) => e instanceof ApiError && e.code === "invalid_value" && e.param === "a[0].b.__proto__",
    );
  });

  test("mounted as express.json's verify: invalid UTF-8 and deep nesting are 400s in OpenAI's shape", async () => {
    const app = express();
    app.use(express.json({ verify: jsonBodyVerify(), type: () => true }));
    app.post("/", (req, res) => res.json({ ok: true, body: req.body as unknown }));
    app.use(errorHandler(() => undefined));
    const server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const post = async (body: Uint8Array | string, contentType = "application/json") => {
      const res = await fetch(url, { method: "POST", headers: { "content-type": contentType }, body });
      return { status: res.status, body: (await res.json()) as { error?: { code: string; type: string; message: string } } };
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
      const ok = await post('{"a":"h\\u00e9 [[[ ]"}');
      assert.equal(ok.status, 200);
      // A non-UTF-8 charset is body-parser's to refuse (415), not this check's.
      assert.equal((await post("{}", "application/json; charset=latin1")).status, 415);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
