// Tenants file (src/tenants/config.ts): defaults, YAML and JSON, and errors
// that name the file and the path of the bad field; the PATCH merge rule.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError } from "../../../src/config.js";
import { loadTenantsFile, mergeTenant, newTenant, parseTenantsConfig, tenantProblem } from "../../../src/tenants/config.js";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING } from "../../../src/tenants/types.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-tenants-config-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
function writeFile(ext: string, text: string): string {
  const file = path.join(dir, `tenants${fileCounter++}.${ext}`);
  fs.writeFileSync(file, text);
  return file;
}

const HASH = hashApiKey("lmx-test-key-1");

function assertConfigError(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

describe("tenants file: valid files", () => {
  test("a YAML file with every field", () => {
    const file = writeFile(
      "yaml",
      `tenants:
  - id: acme
    limits:
      requestsPerMinute: 60
      tokensPerMinute: 10000
      maxConcurrent: 4
      maxQueued: 8
      tokensPerDay: 1000000
      lifetimeTokens: null
      maxTokens: 256
      allowedModels: [stories, gpt-x]
    scheduling: { weight: 2.5, maxPriority: 3, reservedSlots: 1, maxSlots: 2 }
    keys: ["${HASH}"]
`,
    );
    const [acme] = loadTenantsFile(file);
    assert.deepEqual(acme, {
      tenant: {
        id: "acme",
        limits: {
          requestsPerMinute: 60,
          tokensPerMinute: 10000,
          maxConcurrent: 4,
          maxQueued: 8,
          tokensPerDay: 1000000,
          lifetimeTokens: null,
          maxTokens: 256,
          allowedModels: ["stories", "gpt-x"],
        },
        scheduling: { weight: 2.5, maxPriority: 3, reservedSlots: 1, maxSlots: 2 },
      },
      keyHashes: [HASH],
    });
  });

  test("a JSON file with only ids: every limit null, scheduling defaults, no keys", () => {
    const defs = loadTenantsFile(writeFile("json", JSON.stringify({ tenants: [{ id: "a" }, { id: "b_2-x" }] })));
    assert.deepEqual(
      defs.map((d) => d.tenant),
      [
        { id: "a", limits: DEFAULT_LIMITS, scheduling: DEFAULT_SCHEDULING },
        { id: "b_2-x", limits: DEFAULT_LIMITS, scheduling: DEFAULT_SCHEDULING },
      ],
    );
    assert.deepEqual(defs[0]!.keyHashes, []);
  });

  test("partial scheduling keeps the other defaults; upper-case hashes are normalized, duplicates dropped", () => {
    const [d] = parseTenantsConfig({ tenants: [{ id: "a", scheduling: { weight: 3 }, keys: [HASH.toUpperCase(), HASH] }] }, "t.yaml");
    assert.deepEqual(d!.tenant.scheduling, { ...DEFAULT_SCHEDULING, weight: 3 });
    assert.deepEqual(d!.keyHashes, [HASH]);
  });

  test("an empty list of tenants is valid", () => {
    assert.deepEqual(parseTenantsConfig({ tenants: [] }, "t.yaml"), []);
  });
});

describe("tenants file: errors name the file and the field", () => {
  const bad = (value: unknown, ...patterns: RegExp[]) =>
    assertConfigError(() => parseTenantsConfig(value, "/etc/llamux/tenants.yaml"), /\/etc\/llamux\/tenants\.yaml/, ...patterns);

  test("a plaintext key is refused with a message saying to give its hash", () => {
    bad({ tenants: [{ id: "a", keys: [HASH, "lmx-plaintext-key"] }] }, /tenants\[0\]\.keys\[1\]/, /sha256:/, /64 hex/);
    bad({ tenants: [{ id: "a", keys: ["sha256:abc"] }] }, /tenants\[0\]\.keys\[0\]/);
  });

  test("bad limits and scheduling name their path", () => {
    bad({ tenants: [{ id: "a" }, { id: "b", limits: { maxTokens: 0 } }] }, /tenants\[1\]\.limits\.maxTokens/);
    bad({ tenants: [{ id: "a", limits: { requestsPerMinute: 1.5 } }] }, /tenants\[0\]\.limits\.requestsPerMinute/, /integer/);
    bad({ tenants: [{ id: "a", limits: { tokensPerDay: "lots" } }] }, /tenants\[0\]\.limits\.tokensPerDay/);
    bad({ tenants: [{ id: "a", limits: { allowedModels: "stories" } }] }, /tenants\[0\]\.limits\.allowedModels/);
    bad({ tenants: [{ id: "a", scheduling: { weight: 0 } }] }, /tenants\[0\]\.scheduling\.weight/);
    bad({ tenants: [{ id: "a", scheduling: { reservedSlots: 3, maxSlots: 2 } }] }, /tenants\[0\]\.scheduling\.reservedSlots/, /maxSlots/);
  });

  test("unknown fields are refused by name (a typo must not mean unlimited)", () => {
    bad({ tenants: [{ id: "a", limits: { requestPerMinute: 5 } }] }, /tenants\[0\]\.limits\.requestPerMinute/, /unknown field/);
    bad({ tenants: [{ id: "a", key: [HASH] }] }, /tenants\[0\]\.key\b/);
    bad({ tenants: [], extra: 1 }, /extra/);
  });

  test("bad or duplicate ids", () => {
    bad({ tenants: [{ id: "Acme" }] }, /tenants\[0\]\.id/, /a-z/);
    bad({ tenants: [{}] }, /tenants\[0\]\.id/);
    bad({ tenants: [{ id: "a" }, { id: "b" }, { id: "a" }] }, /tenants\[2\]\.id/, /tenants\[0\]/);
  });

  test("one key listed for two tenants", () => {
    bad(
      {
        tenants: [
          { id: "a", keys: [HASH] },
          { id: "b", keys: [HASH] },
        ],
      },
      /tenants\[1\]\.keys\[0\]/,
      /'a'/,
    );
  });

  test("a file without a tenants list", () => {
    bad({}, /tenants/);
    bad(null, /tenants/);
    bad({ tenants: { id: "a" } }, /tenants/);
  });

  test("unreadable or malformed files name the file", () => {
    const missing = path.join(dir, "missing.yaml");
    assertConfigError(() => loadTenantsFile(missing), /cannot read tenants file/, /missing\.yaml/);
    const json = writeFile("json", "{ nope");
    assertConfigError(() => loadTenantsFile(json), new RegExp(path.basename(json).replace(".", "\\.")), /not valid JSON/);
    const yaml = writeFile("yml", "tenants: [\n - id: a\n  b");
    assertConfigError(() => loadTenantsFile(yaml), new RegExp(path.basename(yaml).replace(".", "\\.")), /not valid YAML/);
  });
});

describe("mergeTenant", () => {
  const base = newTenant("a", { limits: { requestsPerMinute: 10, allowedModels: ["m"] }, scheduling: { weight: 2 } });

  test("present keys replace, null clears a limit, absent keys are kept", () => {
    const merged = mergeTenant(base, { limits: { tokensPerMinute: 500, allowedModels: null }, scheduling: { maxSlots: 3 } });
    assert.deepEqual(merged.limits, { ...DEFAULT_LIMITS, requestsPerMinute: 10, tokensPerMinute: 500, allowedModels: null });
    assert.deepEqual(merged.scheduling, { ...DEFAULT_SCHEDULING, weight: 2, maxSlots: 3 });
    assert.equal(merged.id, "a");
  });

  test("the input is not modified", () => {
    mergeTenant(base, { limits: { requestsPerMinute: 1 } });
    assert.equal(base.limits.requestsPerMinute, 10);
  });

  test("tenantProblem finds reserved slots above the cap", () => {
    assert.equal(tenantProblem(base), null);
    assert.equal(tenantProblem(mergeTenant(base, { scheduling: { reservedSlots: 2, maxSlots: 1 } }))?.path, "scheduling.reservedSlots");
  });
});
