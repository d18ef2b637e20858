// What becomes of a background response whose process is gone before it
// finished (kill -9, a crash, a power cut; on a shared store, a replica whose
// lease expired): failed, with the reason, and its stream ends with
// response.failed (BackgroundStore.failUnfinished).
import type { InterruptedOutcome } from "../../store/backgroundStore.js";
import type { JsonObject } from "../../store/conversationStore.js";

export const RESTART_MESSAGE = "The server restarted before this background response finished; it was not completed. Create it again.";
export const REPLICA_LOST_MESSAGE =
  "The replica running this background response stopped before it finished (its lease expired); it was not completed. Create it again.";
export const END_NOT_STORED_MESSAGE =
  "This background response's end could not be stored (the database was unreachable); it was not completed. Create it again.";

/**
 * At start, a background response still queued or in progress was cut by a
 * stop the process could not finish (kill -9, a crash, power): it is failed,
 * with a reason, and its stream ends with response.failed. Re-running it
 * would do its work twice and, for a reader resuming at sequence number N,
 * continue a different generation than the one whose first N events it has.
 */
export const interruptedOutcome: InterruptedOutcome = failedWith(RESTART_MESSAGE);

/** The same outcome, with the reason `message`. */
export function failedWith(message: string): InterruptedOutcome {
  return ({ body, nextSequenceNumber }) => {
    const failed = { ...body, status: "failed", error: { code: "server_error", message }, completed_at: null } as JsonObject;
    return {
      body: failed,
      event: {
        sequenceNumber: nextSequenceNumber,
        type: "response.failed",
        data: { type: "response.failed", response: failed, sequence_number: nextSequenceNumber },
      },
    };
  };
}
