// `node dist/bench/sampleMemory.js PID FILE`: the peak memory of a server,
// process PID and its children, until PID exits. FILE is rewritten as JSON at
// every new peak, so it holds the peaks so far even if the sampler is killed:
//   rssBytes   the processes' RSS summed (a page two of them map counts twice);
//   onceBytes  the same with each physical page counted once (null when that
//              cannot be read, e.g. not root): rssBytes − doubleCountedBytes.
// RSS is read 10 times a second (one small /proc file per process), since
// memory freed within a second would otherwise hide a peak; the pages counted
// twice, which are the processes' shared code and barely move, are re-read
// once a second (their page maps: a few ms of CPU). Used by bench/run-core.sh.
import fs from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { childPidsOf, doubleCountedBytes, readRssBytes } from "./rss.js";

const [pidArg, file] = process.argv.slice(2);
const root = Number(pidArg);
if (!Number.isInteger(root) || root <= 0 || !file) {
  console.error("usage: node dist/bench/sampleMemory.js PID FILE");
  process.exit(2);
}

const EVERY_MS = 100;
const SHARED_EVERY_MS = 1000;
const peak = { rssBytes: 0, onceBytes: null as number | null };
let pids = [root];
let doubled: number | null = null;
let sharedAt = -Infinity;
while (fs.existsSync(`/proc/${root}`)) {
  if (performance.now() - sharedAt >= SHARED_EVERY_MS) {
    pids = [root, ...(await childPidsOf(root))];
    doubled = await doubleCountedBytes(pids);
    sharedAt = performance.now();
  }
  const sum = (await Promise.all(pids.map(readRssBytes))).reduce<number>((a, b) => a + (b ?? 0), 0);
  let changed = false;
  if (sum > peak.rssBytes) [peak.rssBytes, changed] = [sum, true];
  if (doubled !== null && sum - doubled > (peak.onceBytes ?? 0)) [peak.onceBytes, changed] = [sum - doubled, true];
  if (changed) fs.writeFileSync(file, `${JSON.stringify(peak)}\n`);
  await sleep(EVERY_MS);
}
