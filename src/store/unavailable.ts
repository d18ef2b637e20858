// The shared store could not be reached (the database is down, restarting or
// out of connections). Thrown by networked stores instead of their driver's
// error, so the API answers a retryable 503 database_unavailable rather than
// a 500, and nothing above the store needs to know which driver it was.
export class StoreUnavailableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "StoreUnavailableError";
  }
}
