// Per-tenant quotas in process (src/quota/ledger.ts behind LocalQuota): the
// quota contract (quotaContract.ts), which RedisQuota passes too.
import { QuotaLedger } from "../../../src/quota/ledger.js";
import { LocalQuota } from "../../../src/quota/quota.js";
import { quotaContract } from "./quotaContract.js";

quotaContract("QuotaLedger", async (o) => new LocalQuota(await QuotaLedger.open(o)));
