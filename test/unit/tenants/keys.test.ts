// API keys (src/tenants/keys.ts): format and randomness of generated keys,
// hashing, hash normalization, constant-time comparisons and display masks.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { describe, test } from "node:test";
import {
  displayPrefix,
  displayPrefixOfHash,
  generateApiKey,
  generateKeyId,
  hashApiKey,
  keyHashesEqual,
  maskApiKey,
  normalizeKeyHash,
  randomBase62,
  secretsEqual,
} from "../../../src/tenants/keys.js";

describe("generateApiKey", () => {
  test("is lmx- followed by 40 base62 characters", () => {
    for (let i = 0; i < 50; i++) assert.match(generateApiKey(), /^lmx-[A-Za-z0-9]{40}$/);
  });

  test("never repeats and uses the whole alphabet", () => {
    const keys = new Set(Array.from({ length: 500 }, generateApiKey));
    assert.equal(keys.size, 500);
    const seen = new Set([...keys].map((k) => k.slice(4)).join(""));
    assert.equal(seen.size, 62, "all 62 characters appear in 20,000 random ones");
  });

  test("characters are close to uniform (no modulo bias)", () => {
    const text = randomBase62(62 * 2000);
    const counts = new Map<string, number>();
    for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
    // Expected 2000 each; a biased byte % 62 would give the first 8 characters ~2580.
    for (const [c, n] of counts) assert.ok(n > 1700 && n < 2300, `${c} appeared ${n} times`);
  });

  test("key ids are key_ + 24 base62 characters", () => {
    assert.match(generateKeyId(), /^key_[A-Za-z0-9]{24}$/);
  });
});

describe("hashApiKey", () => {
  test("is sha256: + the hex SHA-256 of the key", () => {
    const key = "lmx-abc";
    assert.equal(hashApiKey(key), `sha256:${crypto.createHash("sha256").update(key).digest("hex")}`);
    assert.notEqual(hashApiKey("lmx-abc"), hashApiKey("lmx-abd"));
  });

  test("normalizeKeyHash accepts sha256:<64 hex> in any case and refuses the rest", () => {
    const hex = "ab".repeat(32);
    assert.equal(normalizeKeyHash(`sha256:${hex}`), `sha256:${hex}`);
    assert.equal(normalizeKeyHash(`SHA256:${hex.toUpperCase()}`), `sha256:${hex}`);
    assert.equal(normalizeKeyHash(generateApiKey()), null, "a plaintext key is not a hash");
    assert.equal(normalizeKeyHash(hex), null, "the prefix is required");
    assert.equal(normalizeKeyHash(`sha256:${hex.slice(2)}`), null, "63 hex digits");
    assert.equal(normalizeKeyHash(`sha256:${"zz".repeat(32)}`), null);
    assert.equal(normalizeKeyHash(`md5:${hex}`), null);
  });

  test("keyHashesEqual compares hashes and refuses malformed ones", () => {
    const h = hashApiKey("k1");
    assert.equal(keyHashesEqual(h, hashApiKey("k1")), true);
    assert.equal(keyHashesEqual(h, hashApiKey("k2")), false);
    assert.equal(keyHashesEqual(h, "sha256:00"), false);
  });

  test("secretsEqual compares secrets of any length", () => {
    assert.equal(secretsEqual("admin-key-0123456789", "admin-key-0123456789"), true);
    assert.equal(secretsEqual("admin-key-012345678", "admin-key-0123456789"), false);
    assert.equal(secretsEqual("", "admin-key-0123456789"), false);
  });
});

describe("display", () => {
  test("a key's prefix shows its first 8 characters only", () => {
    assert.equal(displayPrefix("lmx-ab12cdefghijklmnopqrstuvwxyz0123456789AB"), "lmx-ab12…");
    assert.equal(displayPrefixOfHash(`sha256:${"cd".repeat(32)}`), "sha256:cdcdcdcd…");
  });

  test("a presented key is masked as OpenAI does; short strings entirely", () => {
    assert.equal(maskApiKey("lmx-ab12cdefghijklmnopqrstuvwxyz0123456wxyz"), "lmx-ab12****wxyz");
    assert.equal(maskApiKey("short"), "****");
    assert.equal(maskApiKey("fifteen-chars!!"), "****");
  });
});
