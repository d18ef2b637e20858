// `node dist/bench/sampleMemory.js PID FILE`: the peak memory of a server,
// process PID and its children, sampled once a second until PID exits. FILE
// is rewritten as JSON at every new peak, so it holds the peaks so far even if
// the sampler is killed:
//   rssBytes   the processes' RSS summed (a page two of them map counts twice);
//   onceBytes  their resident pages, each physical page counted once (rss.ts
//              residentOnceBytes; null when that cannot be read, e.g. not root).
// Used by bench/run-core.sh. Reads a few small /proc files per sample, and the
// page map of the files the processes share: a few ms of CPU a second.
import fs from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { childPidsOf, readRssBytes, residentOnceBytes } from "./rss.js";

const [pidArg, file] = process.argv.slice(2);
const root = Number(pidArg);
if (!Number.isInteger(root) || root <= 0 || !file) {
  console.error("usage: node dist/bench/sampleMemory.js PID FILE");
  process.exit(2);
}

const peak = { rssBytes: 0, onceBytes: null as number | null };
while (fs.existsSync(`/proc/${root}`)) {
  const pids = [root, ...(await childPidsOf(root))];
  const rss = await Promise.all(pids.map(readRssBytes));
  const sum = rss.reduce<number>((a, b) => a + (b ?? 0), 0);
  const once = await residentOnceBytes(pids);
  let changed = false;
  if (sum > peak.rssBytes) [peak.rssBytes, changed] = [sum, true];
  if (once !== null && once > (peak.onceBytes ?? 0)) [peak.onceBytes, changed] = [once, true];
  if (changed) fs.writeFileSync(file, JSON.stringify(peak) + "\n");
  await sleep(1000);
}
