// Tests that spawn the real CLI start it in its own process group, so that
// the server and its engine worker can be checked for, and killed, together.

/** Whether any process of the group `pgid` is still alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
