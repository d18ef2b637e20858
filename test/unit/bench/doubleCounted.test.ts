// doubleCountedBytes on real processes: this test process and a child node
// process share the node binary's pages, which summed RSS counts twice.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { distinctCount, doubleCountedBytes, readRssBytes } from "../../../bench/rss.js";

test("distinctCount counts each value once across arrays", () => {
  assert.equal(distinctCount([]), 0);
  assert.equal(distinctCount([new Float64Array([3, 1, 3]), new Float64Array([2, 1]), new Float64Array(0)]), 3);
  assert.equal(distinctCount([new Float64Array([2 ** 40 + 1, 2 ** 40])]), 2);
});

test("two node processes share the node binary's pages: summed RSS counts them twice", async () => {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  try {
    await once(child, "spawn");
    await new Promise((r) => setTimeout(r, 300)); // let it map and touch its code
    const doubled = await doubleCountedBytes([process.pid, child.pid!]);
    if (process.getuid?.() !== 0) {
      // Without CAP_SYS_ADMIN the kernel hides page frames: no answer, rather than a wrong one.
      assert.equal(doubled, null);
      return;
    }
    const other = await readRssBytes(child.pid!);
    assert.ok(doubled !== null && other !== null);
    const MiB = 1 << 20;
    // The node binary's code both run is at least a few MiB; no more than the
    // smaller process has resident can be shared.
    assert.ok(doubled > 4 * MiB, `doubled ${doubled}`);
    assert.ok(doubled <= other, `doubled ${doubled} vs the child's RSS ${other}`);
    // A process alone shares nothing with the others counted.
    assert.equal(await doubleCountedBytes([child.pid!]), 0);
  } finally {
    child.kill();
    await once(child, "exit");
  }
});
