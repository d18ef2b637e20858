// The pure rules behind the cross-site guards, the /metrics endpoint label and
// the secret strength check.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { endpointLabel, OTHER_ENDPOINT } from "../../../../src/metrics.js";
import { hostName, isAllowedHost, isLoopbackHost } from "../../../../src/middleware/security.js";
import { estimatedEntropyBits, generateApiKey, repeatPeriod, secretWeakness } from "../../../../src/tenants/keys.js";

describe("Host check", () => {
  test("loopback listeners are recognised", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "example.com"]) assert.equal(isLoopbackHost(h), false, h);
  });

  test("loopback names with any port, and the configured host, are allowed; anything else is not", () => {
    for (const h of ["localhost", "localhost:8080", "LOCALHOST:1", "127.0.0.1:9", "127.0.0.1", "[::1]:8080", "[::1]"])
      assert.equal(isAllowedHost(h, "127.0.0.1"), true, h);
    assert.equal(isAllowedHost("127.0.0.2:80", "127.0.0.2"), true);
    for (const h of [
      undefined,
      "",
      "evil.example",
      "evil.example:8080",
      "127.0.0.1.evil.example",
      "localhost.evil.example:80",
      "127.0.0.1:80@evil",
      "[::2]:80",
    ]) {
      assert.equal(isAllowedHost(h, "127.0.0.1"), false, String(h));
    }
    assert.equal(hostName("[::1]:8080"), "[::1]");
    assert.equal(hostName("a b"), null);
  });
});

describe("endpoint label", () => {
  test("known routes keep their family; every other path folds into one value", () => {
    assert.equal(endpointLabel("/v1/chat/completions"), "/v1/chat");
    assert.equal(endpointLabel("/v1/responses/resp_1/input_items"), "/v1/responses");
    assert.equal(endpointLabel("/v1/models/foo"), "/v1/models");
    assert.equal(endpointLabel("/metrics"), "/metrics");
    assert.equal(endpointLabel("/admin/tenants/x/keys"), "/admin");
    assert.equal(endpointLabel("/console"), "/console");
    assert.equal(endpointLabel("/console/app.js"), "/console");
    for (const p of ["/", "/x1", "/v1/x123", "/v1/chatty", "/health/x", "/administrator", "/consoles", "/v1", "/v1/", "/.env"])
      assert.equal(endpointLabel(p), OTHER_ENDPOINT, p);
    const labels = new Set(Array.from({ length: 1000 }, (_, i) => endpointLabel(`/v1/p${i}/${i}`)));
    assert.deepEqual([...labels], [OTHER_ENDPOINT]);
  });
});

describe("secret strength", () => {
  test("weak secrets are refused with the reason", () => {
    assert.match(secretWeakness("0000000000000000")!, /pattern '0' repeated/);
    assert.match(secretWeakness("abababababababababab")!, /pattern 'ab' repeated/);
    assert.match(secretWeakness("abcdefghijabcdefghijabcdefghij")!, /pattern '10 characters' repeated/);
    assert.match(secretWeakness("short")!, /5 characters, fewer than 16/);
    assert.match(secretWeakness(" padded-key-0123456789 ")!, /spaces/);
    assert.match(secretWeakness("aaaaaaaabbbbbbbbc")!, /too little entropy/);
  });

  test("random and ordinary long keys pass", () => {
    for (let i = 0; i < 200; i++) assert.equal(secretWeakness(generateApiKey()), null);
    // 16 random hex digits, the shortest a person is likely to generate.
    for (let i = 0; i < 200; i++) {
      const hex = Array.from({ length: 16 }, () => "0123456789abcdef"[Math.floor(Math.random() * 16)]).join("");
      assert.equal(secretWeakness(hex), null, hex);
    }
    assert.equal(secretWeakness("admin-key-for-tests-0123456789"), null);
    assert.equal(secretWeakness("admin-key-for-responses-tests-0123"), null);
  });

  test("entropy estimate and period", () => {
    assert.equal(estimatedEntropyBits("0000"), 0);
    assert.equal(estimatedEntropyBits("abab"), 4);
    assert.equal(repeatPeriod("abcabcab"), 3);
    assert.equal(repeatPeriod("abcd"), 4);
  });
});
