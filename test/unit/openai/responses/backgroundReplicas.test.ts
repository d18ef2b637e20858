// ownerStops (src/openai/responses/backgroundReplicas.ts): what the owner's
// poll stops, from its runs and the store's view of its unfinished responses;
// orphans: what the store has unfinished for this replica but nothing here runs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { orphans, ownerStops, type RunView } from "../../../../src/openai/responses/backgroundReplicas.js";

const run = (id: string, over: Partial<RunView> = {}): RunView => ({ tenantId: "t1", id, stored: true, stopping: false, ...over });

test("a run another replica cancelled stops as cancelled; one no longer stored unfinished (deleted, failed by a sweep) stops without writing", () => {
  const stops = ownerStops(
    [run("resp_running"), run("resp_cancelled"), run("resp_deleted")],
    [
      { tenantId: "t1", id: "resp_running", cancelRequested: false },
      { tenantId: "t1", id: "resp_cancelled", cancelRequested: true },
    ],
  );
  assert.deepEqual(stops, [
    { tenantId: "t1", id: "resp_cancelled", reason: "cancelled" },
    { tenantId: "t1", id: "resp_deleted", reason: "deleted" },
  ]);
});

test("a run whose row is not committed yet, or that is already stopping, is left alone; ids are per tenant", () => {
  assert.deepEqual(ownerStops([run("resp_new", { stored: false }), run("resp_ending", { stopping: true })], []), []);
  assert.deepEqual(ownerStops([run("resp_1")], [{ tenantId: "t2", id: "resp_1", cancelRequested: true }]), [
    { tenantId: "t1", id: "resp_1", reason: "deleted" },
  ]);
});

test("orphans: this replica's unfinished responses that no run here holds", () => {
  const owned = [
    { tenantId: "t1", id: "resp_live", cancelRequested: false },
    { tenantId: "t1", id: "resp_lost", cancelRequested: false },
    { tenantId: "t2", id: "resp_live", cancelRequested: true },
  ];
  assert.deepEqual(
    orphans(new Set(["t1\u0000resp_live"]), owned).map((o) => `${o.tenantId}/${o.id}`),
    ["t1/resp_lost", "t2/resp_live"],
  );
  assert.deepEqual(orphans(new Set(), []), []);
});
