// HAProxy agent check (--agent-port): a replica tells its load balancer how
// much it can take. HAProxy connects to the agent every `agent-inter`, reads
// one line and closes; the line sets the server's weight and admin state
// (HAProxy configuration manual, "agent-check"). A plain health check on
// /ready only says up or down; the agent also says "send me less" (a weight
// from free slots and queue depth, like Paddler's slot-aware balancing) and
// "send me nothing new" (drain: while a model loads, while shutting down, or
// when no model serves), without failing the health check, so requests in
// flight and streams finish where they are.
//
// Never `down` or `maint`: a replica that cannot serve at all already fails
// /ready, and a failed agent connection is not taken as a failure by HAProxy,
// so the health check stays the one authority on up and down.
import net from "node:net";
import type { AddressInfo } from "node:net";
import type { ServedModelState } from "../servedModels.js";

/** One served model's load, as the front counts it (no IPC round trip). */
export interface ModelLoad {
  state: ServedModelState;
  slots: number;
  /** Producing output. */
  running: number;
  /** Admitted, no output yet: waiting for a slot or reading the prompt. */
  waiting: number;
  /** Requests that may wait while every slot is busy (--max-queued). */
  maxQueued: number;
}

export interface ReplicaLoad {
  /** False once the server drains (SIGTERM / close()). */
  accepting: boolean;
  models: readonly ModelLoad[];
}

export type AgentDecision = { kind: "drain"; why: "shutting-down" | "loading" | "no-model" } | { kind: "ready"; weightPercent: number };

/** Weight of a replica whose slots are all taken and whose queue is empty; queued requests take it down towards 1 %. */
export const SATURATED_WEIGHT_PERCENT = 10;

/**
 * The agent's answer. Drain while shutting down, while any model loads or
 * restarts after a crash (its requests would wait or fail), and when no model
 * serves. Otherwise the weight falls with demand (running + waiting) over the
 * ready models: 100 % idle, down to SATURATED_WEIGHT_PERCENT when every slot
 * is taken, then towards 1 % as the queue fills. Never 0 %: when every
 * replica is saturated, the replica's own 429 queue_full (with retry-after)
 * is a better answer than the balancer's 503 "no server available".
 */
export function agentDecision(load: ReplicaLoad): AgentDecision {
  if (!load.accepting) return { kind: "drain", why: "shutting-down" };
  if (load.models.some((m) => m.state === "loading" || m.state === "restarting")) return { kind: "drain", why: "loading" };
  const ready = load.models.filter((m) => m.state === "ready");
  if (ready.length === 0) return { kind: "drain", why: "no-model" };
  const slots = ready.reduce((n, m) => n + m.slots, 0);
  const demand = ready.reduce((n, m) => n + m.running + m.waiting, 0);
  const maxQueued = ready.reduce((n, m) => n + m.maxQueued, 0);
  let weight: number;
  if (demand < slots) {
    weight = SATURATED_WEIGHT_PERCENT + ((100 - SATURATED_WEIGHT_PERCENT) * (slots - demand)) / slots;
  } else {
    const queued = demand - slots;
    weight = (SATURATED_WEIGHT_PERCENT * Math.max(0, maxQueued + 1 - queued)) / (maxQueued + 1);
  }
  return { kind: "ready", weightPercent: Math.max(1, Math.min(100, Math.floor(weight))) };
}

/**
 * The line HAProxy reads. "ready" goes with every weight because a weight
 * alone does not lift an earlier drain (measured: HAProxy 2.6 keeps the
 * server in drain after "up 100%" until it reads "ready").
 */
export function formatAgentReply(d: AgentDecision): string {
  return d.kind === "drain" ? "drain\n" : `up ready ${d.weightPercent}%\n`;
}

/**
 * What a backend that only wants the replica's state hears (agent-send
 * "state"): drain, or ready at full weight. Consistent hashing places keys on a
 * ring by weight, so a weight that followed the load would move conversations
 * off the replica holding their KV cache at every change.
 */
export function stateOnly(d: AgentDecision): AgentDecision {
  return d.kind === "drain" ? d : { kind: "ready", weightPercent: 100 };
}

/** The agent-send string that asks for the state only. */
export const AGENT_STATE_ONLY = "state";
/** How long the agent waits for an agent-send string before answering in full (HAProxy sends it at once on connecting). */
export const AGENT_SEND_WAIT_MS = 100;

export interface AgentServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Listens on host:port (0: a free port) and answers every connection with the
 * current decision, then closes it: the state only when HAProxy sent
 * AGENT_STATE_ONLY (its agent-send), the weight too otherwise.
 */
export async function startAgent(host: string, port: number, load: () => ReplicaLoad): Promise<AgentServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let received = "";
    let answered = false;
    const answer = () => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      const d = agentDecision(load());
      socket.end(formatAgentReply(received.trim() === AGENT_STATE_ONLY ? stateOnly(d) : d));
    };
    const timer = setTimeout(answer, AGENT_SEND_WAIT_MS);
    socket.once("close", () => {
      clearTimeout(timer);
      sockets.delete(socket);
    });
    // A peer that resets the connection must not crash the process.
    socket.on("error", () => socket.destroy());
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      if (received.includes("\n") || received.length > 64) answer();
    });
    socket.once("end", answer);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
