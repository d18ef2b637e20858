// The tenant's max_tokens cap (src/quota/capMaxTokens.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { capMaxTokens } from "../../../src/quota/capMaxTokens.js";

test("no cap: the request's value, null included", () => {
  assert.equal(capMaxTokens({ maxTokens: null }, 5000), 5000);
  assert.equal(capMaxTokens({ maxTokens: null }, null), null);
});

test("a request without max_tokens gets the cap", () => {
  assert.equal(capMaxTokens({ maxTokens: 512 }, null), 512);
});

test("a request above the cap is clamped to it; at or below, kept", () => {
  assert.equal(capMaxTokens({ maxTokens: 512 }, 4096), 512);
  assert.equal(capMaxTokens({ maxTokens: 512 }, 512), 512);
  assert.equal(capMaxTokens({ maxTokens: 512 }, 100), 100);
});
