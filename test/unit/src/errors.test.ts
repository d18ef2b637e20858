// The error catalogue (src/errors.ts): OpenAI's error shape and HTTP status per code.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError, fromEngineError, toApiError, type ErrorCode } from "../../../src/errors.js";
import { StoreUnavailableError } from "../../../src/store/unavailable.js";

describe("ApiError", () => {
  test("toJSON() has OpenAI's shape: {error: {message, type, param, code}}", () => {
    const e = new ApiError("invalid_value", "Invalid 'temperature': too hot.", "temperature");
    assert.deepEqual(e.toJSON(), {
      error: { message: "Invalid 'temperature': too hot.", type: "invalid_request_error", param: "temperature", code: "invalid_value" },
    });
    assert.deepEqual(JSON.parse(JSON.stringify(e)), e.toJSON(), "JSON.stringify uses toJSON");
  });

  test("param and retryAfterSeconds default to null", () => {
    const e = new ApiError("internal_error", "boom");
    assert.equal(e.param, null);
    assert.equal(e.retryAfterSeconds, null);
    assert.deepEqual(e.toJSON(), { error: { message: "boom", type: "server_error", param: null, code: "internal_error" } });
  });

  test("is an Error with the message, code and status", () => {
    const e = new ApiError("not_found", "nope");
    assert.ok(e instanceof Error);
    assert.equal(e.message, "nope");
    assert.equal(e.code, "not_found");
    assert.equal(e.status, 404);
    assert.equal(e.type, "not_found_error");
  });

  test("every code maps to its status and type", () => {
    const expected: Record<ErrorCode, [number, string]> = {
      invalid_json: [400, "invalid_request_error"],
      invalid_body: [400, "invalid_request_error"],
      missing_required_parameter: [400, "invalid_request_error"],
      invalid_type: [400, "invalid_request_error"],
      invalid_value: [400, "invalid_request_error"],
      unsupported_parameter: [400, "invalid_request_error"],
      unknown_parameter: [400, "invalid_request_error"],
      invalid_prompt: [400, "invalid_request_error"],
      context_length_exceeded: [400, "invalid_request_error"],
      previous_response_not_found: [400, "invalid_request_error"],
      model_not_found: [404, "invalid_request_error"],
      invalid_api_key: [401, "invalid_request_error"],
      model_not_allowed: [403, "permission_error"],
      tenant_exists: [409, "invalid_request_error"],
      rate_limit_exceeded: [429, "requests"],
      insufficient_quota: [429, "insufficient_quota"],
      queue_full: [429, "rate_limit_error"],
      engine_crash_quarantine: [429, "rate_limit_error"],
      not_found: [404, "not_found_error"],
      misdirected_request: [421, "invalid_request_error"],
      request_too_large: [413, "invalid_request_error"],
      unsupported_media_type: [415, "invalid_request_error"],
      engine_unavailable: [503, "server_error"],
      model_not_loaded: [503, "server_error"],
      queue_timeout: [503, "server_error"],
      quota_unavailable: [503, "server_error"],
      engine_restarted: [503, "server_error"],
      database_unavailable: [503, "server_error"],
      engine_error: [500, "server_error"],
      internal_error: [500, "server_error"],
    };
    for (const [code, [status, type]] of Object.entries(expected) as Array<[ErrorCode, [number, string]]>) {
      const e = new ApiError(code, "m");
      assert.equal(e.status, status, code);
      assert.equal(e.type, type, code);
      assert.equal(e.toJSON().error.code, code);
    }
  });

  test("a 429 may name the limit as its type and carry headers", () => {
    const e = new ApiError("rate_limit_exceeded", "slow down", null, 2, { type: "tokens", headers: { "retry-after-ms": "1500" } });
    assert.equal(e.status, 429);
    assert.equal(e.toJSON().error.type, "tokens");
    assert.deepEqual(e.headers, { "retry-after-ms": "1500" });
  });

  test("retryAfterSeconds is kept", () => {
    assert.equal(new ApiError("engine_unavailable", "later", null, 5).retryAfterSeconds, 5);
  });
});

describe("fromEngineError", () => {
  test("engine_unavailable and engine_restarted ask the client to retry after 1 s", () => {
    for (const code of ["engine_unavailable", "engine_restarted"] as const) {
      const e = fromEngineError({ code, message: "m", param: null });
      assert.equal(e.code, code);
      assert.equal(e.status, 503);
      assert.equal(e.retryAfterSeconds, 1);
    }
  });

  test("other engine errors keep message and param, without retry", () => {
    const e = fromEngineError({ code: "context_length_exceeded", message: "too long", param: "messages" });
    assert.equal(e.status, 400);
    assert.equal(e.retryAfterSeconds, null);
    assert.deepEqual(e.toJSON(), { error: { message: "too long", type: "invalid_request_error", param: "messages", code: "context_length_exceeded" } });
  });
});

describe("toApiError", () => {
  test("a store that cannot reach its database is a retryable 503 database_unavailable, its cause kept out of the message", () => {
    const e = toApiError(new StoreUnavailableError("the database is unavailable: connect ECONNREFUSED 10.0.0.5:5432"));
    assert.equal(e.status, 503);
    assert.equal(e.code, "database_unavailable");
    assert.equal(e.type, "server_error");
    assert.ok(e.retryAfterSeconds !== null && e.retryAfterSeconds > 0);
    assert.doesNotMatch(e.message, /10\.0\.0\.5/);
  });

  test("an ApiError passes through unchanged (same object)", () => {
    const e = new ApiError("invalid_value", "x", "y");
    assert.equal(toApiError(e), e);
  });

  test("body-parser's entity.parse.failed becomes a 400 invalid_json", () => {
    const e = toApiError(Object.assign(new SyntaxError("Unexpected token"), { type: "entity.parse.failed", status: 400 }));
    assert.equal(e.code, "invalid_json");
    assert.equal(e.status, 400);
    assert.equal(e.param, null);
    assert.equal(e.type, "invalid_request_error");
    assert.match(e.message, /JSON/);
  });

  test("a plain object with type entity.parse.failed is mapped the same", () => {
    assert.equal(toApiError({ type: "entity.parse.failed" }).code, "invalid_json");
  });

  test("body-parser's entity.too.large becomes a 413 naming the limit", () => {
    const e = toApiError({ type: "entity.too.large", status: 413, limit: 4096, length: 10000 });
    assert.equal(e.code, "request_too_large");
    assert.equal(e.status, 413);
    assert.match(e.message, /\b4096 bytes/);
  });

  test("unsupported encodings and charsets become 415", () => {
    for (const type of ["encoding.unsupported", "charset.unsupported"]) {
      const e = toApiError({ type, status: 415, message: `nope: ${type}` });
      assert.equal(e.code, "unsupported_media_type", type);
      assert.equal(e.status, 415);
      assert.equal(e.message, `nope: ${type}`);
    }
    assert.equal(toApiError({ type: "charset.unsupported" }).message, "Unsupported body encoding.");
  });

  test("other 4xx errors become invalid_body with their message", () => {
    const e = toApiError({ status: 400, type: "request.aborted", message: "request aborted" });
    assert.equal(e.code, "invalid_body");
    assert.equal(e.status, 400);
    assert.equal(e.message, "request aborted");
    assert.equal(toApiError({ status: 499 }).code, "invalid_body");
  });

  test("anything else is a 500 internal_error that does not leak the original message", () => {
    for (const err of [new Error("secret db password"), { status: 500, message: "secret" }, { status: 302 }, "string", 42, null, undefined]) {
      const e = toApiError(err);
      assert.equal(e.code, "internal_error", String(err));
      assert.equal(e.status, 500);
      assert.doesNotMatch(e.message, /secret/);
    }
  });
});
