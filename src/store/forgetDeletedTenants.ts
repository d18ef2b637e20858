// A deleted tenant's stored responses and conversations are deleted with it:
// tenant ids can be reused, and a new tenant must not inherit an old one's data.
import type { Logger } from "../logger.js";
import type { TenantChangeListener } from "../tenants/registry.js";
import type { ConversationStore } from "./conversationStore.js";

/** Subscribes to tenant deletions; returns the unsubscribe function. */
export function forgetDeletedTenants(tenants: { onChange(listener: TenantChangeListener): () => void }, store: ConversationStore, log: Logger): () => void {
  return tenants.onChange((change) => {
    if (change.type !== "deleted") return;
    store.deleteTenantData(change.tenantId).then(
      () => log.info({ tenant: change.tenantId }, "deleted the stored responses and conversations of a deleted tenant"),
      (err: unknown) => log.error({ err, tenant: change.tenantId }, "deleting a deleted tenant's stored responses and conversations failed"),
    );
  });
}
