// One attack of `llamux bench attack`, run in a worker thread: the attacker's
// requests (tens of thousands, some megabytes each) must not share the event
// loop that times the victim's requests, or the bench would measure its own
// congestion. Started with workerData {id, ctx}; "stop" ends it, and it posts
// back the attacker's outcomes once every request it sent has ended.
import { parentPort, workerData } from "node:worker_threads";
import { ATTACKS, type AttackWorkerMessage } from "./attack.js";

const { id, ctx } = workerData as { id: string; ctx: { url: string; model: string; attackerKey: string } };
const outcomes: Record<string, number> = {};
const attack = ATTACKS.find((a) => a.id === id);
if (!attack) throw new Error(`no attack '${id}'`);
const post = (m: AttackWorkerMessage) => parentPort!.postMessage(m);
const stop = attack.start({ ...ctx, outcomes });
void stop.done?.then(() => post({ type: "finished" }));
parentPort!.once("message", () => {
  void stop().then(() => {
    post({ type: "outcomes", outcomes });
    parentPort!.close();
  });
});
post({ type: "started" });
