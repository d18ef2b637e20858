// Crash attribution and quarantine (engine/crashQuarantine.ts), with a fake clock.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CrashQuarantine, crashReplayable, crashSuspects, requestFingerprint, type InFlightRequest } from "../../../engine/crashQuarantine.js";

const req = (tenant: string, fingerprint: string, phase: InFlightRequest["phase"]): InFlightRequest => ({ tenant, fingerprint, phase });
const opts = { windowMs: 60_000, strikes: 2, tenantCooldownMs: 30_000, requestCooldownMs: 600_000 };

describe("crashReplayable", () => {
  const r = (fingerprint: string, phase: InFlightRequest["phase"], replayed = false) => ({ tenant: "t", fingerprint, phase, replayed });
  test("with an unread request to blame, every other one without output is replayed, once", () => {
    const inflight = [r("run", "running"), r("acc", "accepted"), r("unread", "sent"), r("later", "sent"), r("again", "accepted", true)];
    assert.deepEqual(
      crashReplayable(inflight).map((x) => x.fingerprint),
      ["acc", "later"],
    );
  });
  test("with none unread, the ones without output are the suspects: nothing is replayed", () => {
    assert.deepEqual(crashReplayable([r("run", "running"), r("acc", "accepted")]), []);
  });
});

describe("crashSuspects", () => {
  test("the first request the worker had not answered is the suspect, not those sent after it nor those it was generating for", () => {
    const inflight = [req("victim", "v1", "running"), req("attacker", "a1", "sent"), req("victim", "v2", "accepted"), req("victim", "v3", "sent")];
    assert.deepEqual(
      crashSuspects(inflight).map((r) => r.fingerprint),
      ["a1"],
    );
  });

  test("with every request answered, those admitted with no output yet (in prefill)", () => {
    const inflight = [req("victim", "v1", "running"), req("attacker", "a1", "accepted")];
    assert.deepEqual(
      crashSuspects(inflight).map((r) => r.fingerprint),
      ["a1"],
    );
  });

  test("with every request generating, all of them", () => {
    const inflight = [req("a", "1", "running"), req("b", "2", "running")];
    assert.equal(crashSuspects(inflight).length, 2);
  });
});

describe("CrashQuarantine", () => {
  test("a tenant that is the sole suspect of two crashes within the window is refused for the cool-down, others are not", () => {
    const q = new CrashQuarantine(opts);
    q.recordCrash([req("attacker", "a1", "sent")], 1000);
    assert.equal(
      q.check("attacker", () => "a2", 1001),
      null,
      "one crash is a coincidence",
    );
    q.recordCrash([req("attacker", "a2", "sent")], 5000);
    assert.deepEqual(
      q.check("attacker", () => "a3", 5001),
      { kind: "tenant", untilMs: 35_000, crashes: 2 },
    );
    assert.equal(
      q.check("victim", () => "v1", 5001),
      null,
    );
    assert.equal(
      q.check("attacker", () => "a3", 35_000),
      null,
      "the cool-down ends",
    );
  });

  test("crashes further apart than the window never add up", () => {
    const q = new CrashQuarantine(opts);
    q.recordCrash([req("t", "x1", "sent")], 0);
    q.recordCrash([req("t", "x2", "sent")], 60_001);
    assert.equal(
      q.check("t", () => "x3", 60_002),
      null,
    );
  });

  test("a replayed request is refused for any tenant that sends it, for the request cool-down", () => {
    const q = new CrashQuarantine(opts);
    q.recordCrash([req("a", "boom", "sent")], 0);
    q.recordCrash([req("b", "boom", "sent")], 10);
    // Each tenant had one crash: neither is quarantined as a whole.
    assert.equal(
      q.check("a", () => "other", 20),
      null,
    );
    assert.deepEqual(
      q.check("c", () => "boom", 20),
      { kind: "request", untilMs: 600_010, crashes: 2 },
    );
  });

  test("a bystander read in the same step shares the strike: two shared crashes do not quarantine it", () => {
    const q = new CrashQuarantine(opts);
    q.recordCrash([req("attacker", "a1", "sent"), req("victim", "v1", "sent")], 0);
    q.recordCrash([req("attacker", "a2", "sent"), req("victim", "v2", "sent")], 10);
    assert.equal(
      q.check("victim", () => "v3", 20),
      null,
    );
    assert.equal(
      q.check("attacker", () => "a3", 20),
      null,
    );
    // The attacker's third and fourth crash alone do.
    q.recordCrash([req("attacker", "a3", "sent")], 30);
    assert.equal(q.check("attacker", () => "a4", 40)?.kind, "tenant");
    assert.equal(
      q.check("victim", () => "v3", 40),
      null,
    );
  });

  test("the anonymous tenant (no --tenants) is never quarantined whole: that would refuse everyone", () => {
    const q = new CrashQuarantine(opts);
    q.recordCrash([req("default", "p1", "sent")], 0);
    q.recordCrash([req("default", "p2", "sent")], 10);
    assert.equal(
      q.check("default", () => "p3", 20),
      null,
    );
    q.recordCrash([req("default", "p1", "sent")], 30);
    assert.equal(q.check("default", () => "p1", 40)?.kind, "request", "but a replayed prompt is");
  });

  test("fingerprints are hashed only when some request is quarantined, and remembered within a bound", () => {
    const q = new CrashQuarantine({ ...opts, maxFingerprints: 2 });
    assert.equal(
      q.check("t", () => assert.fail("hashed for nothing"), 0),
      null,
    );
    for (const f of ["f1", "f2", "f3"]) q.recordCrash([req("default", f, "sent")], 0);
    assert.equal(q.tracksRequests, true);
    q.recordCrash([req("default", "f3", "sent")], 1);
    assert.equal(q.check("default", () => "f3", 2)?.kind, "request");
  });
});

describe("requestFingerprint", () => {
  test("same model and prompt: same fingerprint; anything else differs", () => {
    const p = { kind: "text", text: "# Chapter" };
    assert.equal(requestFingerprint("m", p), requestFingerprint("m", { ...p }));
    assert.notEqual(requestFingerprint("m", p), requestFingerprint("n", p));
    assert.notEqual(requestFingerprint("m", p), requestFingerprint("m", { kind: "text", text: "# Chapter 2" }));
  });
});
