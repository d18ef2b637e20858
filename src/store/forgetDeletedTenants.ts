// A deleted tenant's stored responses and conversations are deleted with it:
// tenant ids can be reused, and a new tenant must not inherit an old one's data.
// The replica whose registry made the deletion does it (once, for every replica
// sharing the store).
import type { Logger } from "../logger.js";
import type { TenantChangeListener } from "../tenants/registry.js";
import type { ConversationStore } from "./conversationStore.js";

/** Subscribes to tenant deletions; returns the unsubscribe function. */
export function forgetDeletedTenants(tenants: { onChange(listener: TenantChangeListener): () => void }, store: ConversationStore, log: Logger): () => void {
  return tenants.onChange((change) => {
    // A deletion another replica made (learned from the shared store) was followed there by
    // this very delete, on the same data; doing it again here could remove the rows of a
    // tenant re-created under the id meanwhile.
    if (change.type !== "deleted" || change.fromStore) return;
    store.deleteTenantData(change.tenantId).then(
      () => log.info({ tenant: change.tenantId }, "deleted the stored responses and conversations of a deleted tenant"),
      (err: unknown) => log.error({ err, tenant: change.tenantId }, "deleting a deleted tenant's stored responses and conversations failed"),
    );
  });
}
