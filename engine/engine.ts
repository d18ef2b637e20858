// The engine over node-llama-cpp: the step loop (engineCore.ts) on one
// llama.cpp context's sequences (llamaSequence.ts). All the engine's
// decisions are in the core and the planning it calls; this file only wires
// the model in.
import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import type { ChatTemplate } from "../models/chatTemplate.js";
import { EngineCore, type Emit, type EngineOptions } from "./engineCore.js";
import { llamaRuntime } from "./llamaSequence.js";
import type { SavedStates } from "./sequence.js";

export type { EngineOptions } from "./engineCore.js";

export class Engine extends EngineCore {
  constructor(model: LlamaModel, context: LlamaContext, template: ChatTemplate, opts: EngineOptions, emit: Emit, kv: SavedStates | null = null) {
    super(llamaRuntime(model, context, template, opts), opts, emit, kv);
  }
}
