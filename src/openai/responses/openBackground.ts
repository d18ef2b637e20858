// Where background responses are kept, chosen once at start: beside the
// responses' rows in SQLite (one process), or in the shared PostgreSQL, where
// this replica takes a lease before it creates anything and only the
// responses of replicas whose lease expired are failed (docs/replicas.md).
// Either way, what a process that is gone left unfinished is failed now, with
// the reason (docs/api.md), and BackgroundResponses.close() releases the store.
import type { Logger } from "../../logger.js";
import type { ConversationStore } from "../../store/conversationStore.js";
import { PgBackgroundStore } from "../../store/postgres/backgroundStore.js";
import type { PostgresState } from "../../store/postgres/index.js";
import { SqliteBackgroundStore } from "../../store/sqliteBackgroundStore.js";
import { SqliteConversationStore } from "../../store/sqliteConversationStore.js";
import { BackgroundResponses } from "./background.js";
import { failedWith, interruptedOutcome, REPLICA_LOST_MESSAGE } from "./interrupted.js";

export async function openBackgroundResponses(conversations: ConversationStore, pg: PostgresState | null, log: Logger): Promise<BackgroundResponses> {
  const store = pg ? await openShared(pg, log) : conversations instanceof SqliteConversationStore ? new SqliteBackgroundStore(conversations.db) : null;
  const interruptedAs = pg ? failedWith(REPLICA_LOST_MESSAGE) : interruptedOutcome;
  try {
    const interrupted = store ? await store.failUnfinished(interruptedAs) : 0;
    if (interrupted > 0)
      log.warn(
        { interrupted },
        pg ? "background responses of replicas that are gone are marked failed" : "background responses cut by the previous stop are marked failed",
      );
  } catch (err) {
    await store?.close();
    throw err;
  }
  return new BackgroundResponses(store, log, interruptedAs);
}

async function openShared(pg: PostgresState, log: Logger): Promise<PgBackgroundStore> {
  const store = await PgBackgroundStore.open(pg.db, {
    onLease: (e) => {
      if (e.ok) log.info("this replica's background-response lease is renewed again");
      else
        log.error(
          { err: (e.err as Error).message },
          "cannot renew this replica's background-response lease: once it expires, the other replicas fail what this one runs",
        );
    },
  });
  log.info({ replicaId: store.replicaId, leaseMs: store.leaseMs }, "background responses shared through PostgreSQL");
  return store;
}
