// The models a server serves: each has its own engine worker (one llama.cpp
// context, its own slots, chat template and KV cache), its own bound on
// waiting requests, and the names clients may ask for it by. The front routes
// every request to one of them by the request's `model`.
import type { EngineClient } from "../engine/index.js";
import type { ServerQueue } from "./quota/serverQueue.js";
import type { ModelPrice } from "./usage/usageLog.js";

export interface ServedModel {
  /** The name /v1/models lists first: the configured id, or the file's name. */
  id: string;
  /** Other names clients may use for it. */
  aliases: readonly string[];
  engine: EngineClient;
  /** Requests waiting for one of this model's slots (--max-queued applies per model). */
  queue: ServerQueue;
  /** Why its worker could not load the model; null while it loads or serves. */
  loadError: string | null;
  /** USD per million tokens, stamped on each usage record; null or absent: no price. */
  price?: ModelPrice | null;
}

/** What a model is doing now, as /ready and model_not_loaded errors report it. */
export type ServedModelState = "loading" | "ready" | "restarting" | "failed" | "stopping" | "stopped";

export class ServedModels {
  private readonly byName = new Map<string, ServedModel>();

  /** Throws when two models claim the same name: a request must never be routed by chance. */
  constructor(readonly all: readonly ServedModel[]) {
    for (const m of all) {
      for (const name of [m.id, ...m.aliases]) {
        const other = this.byName.get(name);
        if (other && other !== m) throw new Error(`model name '${name}' is used by both '${other.id}' and '${m.id}'`);
        this.byName.set(name, m);
      }
    }
  }

  find(name: string): ServedModel | undefined {
    return this.byName.get(name);
  }

  /** The names (id first, then aliases) of the served model called `name`; undefined when none is. */
  namesOf(name: string): readonly string[] | undefined {
    const m = this.byName.get(name);
    return m ? [m.id, ...m.aliases] : undefined;
  }

  /** Every name a client may use, ids first. */
  names(): string[] {
    return [...new Set([...this.all.map((m) => m.id), ...this.all.flatMap((m) => m.aliases)])];
  }

  /** Ready to serve every configured model. */
  get ready(): boolean {
    return this.all.every((m) => m.engine.ready);
  }

  /** The smallest slot count among the loaded models: a tenant's reservation must fit each of them. */
  minSlots(): number | null {
    const slots = this.all.map((m) => m.engine.model?.slots).filter((s): s is number => s !== undefined);
    return slots.length === 0 ? null : Math.min(...slots);
  }
}

export function modelState(m: ServedModel): ServedModelState {
  if (m.loadError !== null) return "failed";
  switch (m.engine.state) {
    case "starting":
      return "loading";
    case "ready":
      return "ready";
    case "restarting":
      return "restarting";
    case "stopping":
      return "stopping";
    case "stopped":
      return "stopped";
  }
}
