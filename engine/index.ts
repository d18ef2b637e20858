// The engine surface the front process (src/) may import. Nothing reachable
// from here loads node-llama-cpp: the model lives in the worker process.
export {
  EngineClient,
  overReserved,
  validateTenantPolicies,
  type EmbedOutcome,
  type EngineEvent,
  type EngineState,
  type EngineClientOptions,
  type RequestEvents,
  DEFAULT_MAX_BUFFERED_BYTES,
} from "./client.js";
export * from "./protocol.js";
export { MAX_LOGIT_BIAS_ENTRIES, refuseEarly } from "./promptBounds.js";
