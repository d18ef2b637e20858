// The engine's books on fork groups (n > 1 choices, protocol.ts ForkSpec):
// which job leads each group and which waiting members share its prompt; at
// each step, which members planning may admit and which of them copy their
// leader's state, and from which slot (fork.ts forkDecision). Plain data over
// jobs; the engine tells it where each job is. What it decides travels in the
// views it returns (WaitingView.copy), and from there in the plan.
import { forkDecision, type LeaderView } from "./fork.js";
import type { Job } from "./job.js";
import type { WaitingView } from "./scheduler.js";
import { commonPrefixLength } from "./slots.js";

/** Where a job is: waiting for a slot, holding one, or out of the engine. */
export type JobPlace = "waiting" | "running" | "gone";

export class ForkGroups {
  /** By group: its leader, while it is in the engine. */
  private readonly leaders = new Map<string, Job>();
  /** A waiting member's leader, when both have the same prompt. */
  private readonly memberLeaders = new Map<string, Job>();

  /**
   * At submit: enters a group's leader, or links a member to its leader when
   * they share the prompt (compared once, here) and the tenant: KV state never
   * crosses tenants, whatever group a request names.
   */
  link(job: Job): void {
    if (!job.fork) return;
    if (job.fork.index === 0) {
      this.leaders.set(job.fork.group, job);
      return;
    }
    const leader = this.leaders.get(job.fork.group);
    if (
      leader &&
      leader.tenant === job.tenant &&
      leader.prompt.length === job.prompt.length &&
      commonPrefixLength(leader.prompt, job.prompt) === job.prompt.length
    ) {
      this.memberLeaders.set(job.id, leader);
    }
  }

  /** When the job leaves the engine, whichever way. */
  forget(job: Job): void {
    this.memberLeaders.delete(job.id);
    if (job.fork && this.leaders.get(job.fork.group) === job) this.leaders.delete(job.fork.group);
  }

  /**
   * The waiting jobs this step may plan, as the scheduler sees them, in
   * order: members whose leader has not read the prompt yet are left out
   * (they take no slot meanwhile), and those that will copy it carry their
   * source: the leader, its slot and the tokens they get. A cancelled or
   * departed leader holds no one back, and one whose slot does not hold the
   * prompt is not copied.
   */
  plannable(waiting: readonly Job[], placeOf: (job: Job) => JobPlace): WaitingView[] {
    const views: WaitingView[] = [];
    for (const job of waiting) {
      const view: WaitingView = { id: job.id, tenant: job.tenant, priority: job.priority, promptTokens: job.prompt, ...(job.batch ? { batch: true } : {}) };
      const leader = this.memberLeaders.get(job.id);
      const place = leader && !leader.cancelled ? placeOf(leader) : "gone";
      const leaderView: LeaderView | null =
        place === "gone" ? null : place === "waiting" ? { state: "waiting" } : { state: "running", evaluated: leader!.evaluated };
      const decision = forkDecision(job.prompt.length, leaderView);
      if (decision.kind === "held") continue;
      const from = leader?.slot;
      // Its slot is the truth: a copy of anything but the prompt would be a wrong answer, not a slow one.
      if (decision.kind === "copy" && from && commonPrefixLength(from.seq.contextTokens, job.prompt) >= decision.sharedTokens) {
        view.copy = { leader: leader!.id, fromSlot: from.index, tokens: decision.sharedTokens };
      }
      views.push(view);
    }
    return views;
  }
}
