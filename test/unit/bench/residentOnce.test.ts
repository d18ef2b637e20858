// residentOnceBytes on real processes: this test process and a child node
// process share the node binary's pages, which summed RSS counts twice.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { distinctCount, readRssBytes, residentOnceBytes } from "../../../bench/rss.js";

test("distinctCount counts each value once across arrays", () => {
  assert.equal(distinctCount([]), 0);
  assert.equal(distinctCount([new Float64Array([3, 1, 3]), new Float64Array([2, 1]), new Float64Array(0)]), 3);
  assert.equal(distinctCount([new Float64Array([2 ** 40 + 1, 2 ** 40])]), 2);
});

test("two node processes together occupy less than their summed RSS, and no less than the larger", async () => {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  try {
    await once(child, "spawn");
    await new Promise((r) => setTimeout(r, 300)); // let it map and touch its code
    const pids = [process.pid, child.pid!];
    const onceBytes = await residentOnceBytes(pids);
    if (process.getuid?.() !== 0) {
      // Without CAP_SYS_ADMIN the kernel hides page frames: no answer, rather than a wrong one.
      assert.equal(onceBytes, null);
      return;
    }
    const self = await readRssBytes(process.pid);
    const other = await readRssBytes(child.pid!);
    assert.ok(onceBytes !== null && self !== null && other !== null);
    const MiB = 1 << 20;
    // Both map the node binary; its shared code is at least a few MiB.
    assert.ok(onceBytes < self + other - 4 * MiB, `once ${onceBytes} vs ${self} + ${other}`);
    assert.ok(onceBytes > Math.max(self, other) - 4 * MiB, `once ${onceBytes} vs max(${self}, ${other})`);
    // One process alone shares nothing with anyone counted: its RSS (as it moves between reads).
    const alone = (await residentOnceBytes([child.pid!]))!;
    assert.ok(Math.abs(alone - other) < 4 * MiB, `alone ${alone} vs RSS ${other}`);
  } finally {
    child.kill();
    await once(child, "exit");
  }
});
