// Background responses on a store shared by several replicas (a
// BackgroundStore with `shared`): a response runs on the replica that
// created it (its owner) and nowhere else. Another replica reaches it only
// through the store: a cancel is a flag the owner polls for (every
// OWNER_POLL_MS, one indexed query for all its runs, only while it runs
// some), a delete removes the rows the owner then finds gone, and a stream is
// the stored log, followed every FOLLOW_POLL_MS until the response ends. A
// replica that dies stops renewing its lease; every replica sweeps every
// SWEEP_MS and fails the unfinished responses of owners whose lease expired.
import type { BackgroundStatus, OwnedResponse } from "../../store/backgroundStore.js";

/** How often an owner checks whether another replica cancelled or deleted what it runs. */
export const OWNER_POLL_MS = 250;
/** How often a stream on a replica that does not run the response reads the new stored events. */
export const FOLLOW_POLL_MS = 100;
/** How often each replica fails the unfinished responses of replicas whose lease expired. */
export const SWEEP_MS = 2_000;
/**
 * How long a cancel received by another replica waits for the owner to store
 * the cancelled response (with the output it had) before storing it cancelled
 * itself (without): the owner is slow or cannot reach the database.
 */
export const CANCEL_WAIT_MS = 5_000;

/** A run of this replica, as the owner's poll sees it. */
export interface RunView {
  tenantId: string;
  id: string;
  /** Its row is committed (before that, its absence from the store means nothing). */
  stored: boolean;
  /** Already stopping (ended, cancelled, shut down). */
  stopping: boolean;
}

/**
 * What the owner's poll stops, given its runs and the store's view of its
 * unfinished responses: a run whose response another replica cancelled stops
 * as cancelled (the owner stores it, with the output it had); one whose
 * response is no longer there unfinished (deleted, its tenant deleted, or
 * failed by a sweep while this replica could not renew its lease) stops
 * without writing anything more. Pure.
 */
export function ownerStops(
  runs: readonly RunView[],
  owned: readonly OwnedResponse[],
): Array<{ tenantId: string; id: string; reason: "cancelled" | "deleted" }> {
  const stored = new Map(owned.map((o) => [`${o.tenantId}\u0000${o.id}`, o]));
  const stops: Array<{ tenantId: string; id: string; reason: "cancelled" | "deleted" }> = [];
  for (const run of runs) {
    if (!run.stored || run.stopping) continue;
    const o = stored.get(`${run.tenantId}\u0000${run.id}`);
    if (!o) stops.push({ tenantId: run.tenantId, id: run.id, reason: "deleted" });
    else if (o.cancelRequested) stops.push({ tenantId: run.tenantId, id: run.id, reason: "cancelled" });
  }
  return stops;
}

/**
 * This replica's responses the store has unfinished but nothing here runs:
 * their run ended without storing its end (the database was unreachable
 * then). Failing them is conditional on their still being unfinished, so one
 * whose end was committed while this was decided is left as it is. Pure.
 */
export function orphans(liveKeys: ReadonlySet<string>, owned: readonly OwnedResponse[]): OwnedResponse[] {
  return owned.filter((o) => !liveKeys.has(`${o.tenantId}\u0000${o.id}`));
}

export function isUnfinished(status: BackgroundStatus | null): boolean {
  return status === "queued" || status === "in_progress";
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
