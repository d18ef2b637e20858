// A response's output items, built as the model writes: text becomes a
// message item, each tool call a function_call item, in the order written.
// Items are sequential, as OpenAI streams them: an item is done before the
// next one is added. Streaming passes a listener that turns each step into
// its events; a non-streaming response reads `finish()`'s items only.
//
// Whitespace the model writes around its calls is not a message: text that
// is only whitespace is held until something else comes, dropped when a call
// does, and becomes the message only when nothing else was written.
import type { TokenLogprob } from "../../../engine/index.js";
import type { Item, ItemStatus, MessageItem } from "../../store/conversationStore.js";
import { responseLogProb } from "../logprobs.js";
import type { ToolCallEvent } from "../tools/toolCallParser.js";
import { newObjectId } from "./items.js";
import { functionCall, outputMessage } from "./responseObject.js";

export interface OutputListener {
  added(outputIndex: number, item: Item): Promise<void>;
  /** `logprobs`: the entries of the tokens this delta's text came from (none unless asked for). */
  textDelta(outputIndex: number, item: MessageItem, delta: string, logprobs: readonly TokenLogprob[]): Promise<void>;
  argumentsDelta(outputIndex: number, itemId: string, delta: string): Promise<void>;
  done(outputIndex: number, item: Item): Promise<void>;
}

type Open = { kind: "message"; id: string; text: string; logprobs: TokenLogprob[] } | { kind: "call"; id: string; callId: string; name: string; args: string };

export class OutputItems {
  private readonly items: Item[] = [];
  private open: Open | null = null;
  private heldWhitespace = "";
  /** The logprobs of the held whitespace's tokens: they go where it goes. */
  private heldLogprobs: TokenLogprob[] = [];

  constructor(private readonly listener: OutputListener | null = null) {}

  /** Opens the message item now (no tools: the stream starts with it, even if no text follows). */
  async startMessage(): Promise<void> {
    await this.openMessage();
  }

  /** Everything written so far, as items (the open one in progress). */
  get snapshot(): Item[] {
    return this.open ? [...this.items, this.openItem("in_progress")] : [...this.items];
  }

  async push(events: readonly ToolCallEvent[]): Promise<void> {
    for (const e of events) {
      if (e.type === "content") await this.text(e.text);
      else if (e.type === "call") await this.call(e.id, e.name);
      else await this.arguments(e.text);
    }
  }

  async text(text: string, logprobs: readonly TokenLogprob[] = []): Promise<void> {
    if (this.open?.kind !== "message") {
      if ((this.heldWhitespace + text).trim() === "") {
        this.heldWhitespace += text;
        this.heldLogprobs.push(...logprobs);
        return;
      }
      text = this.heldWhitespace + text;
      logprobs = [...this.heldLogprobs, ...logprobs];
      this.dropHeld();
      await this.openMessage();
    }
    const open = this.open as Extract<Open, { kind: "message" }>;
    open.text += text;
    open.logprobs.push(...logprobs);
    await this.listener?.textDelta(this.items.length, this.openItem("in_progress") as MessageItem, text, logprobs);
  }

  /** Ends the output: the last item gets `status` (incomplete when generation was cut by max_output_tokens). */
  async finish(status: ItemStatus): Promise<Item[]> {
    if (!this.open && this.items.length === 0) {
      const [held, heldLogprobs] = [this.heldWhitespace, this.heldLogprobs];
      this.dropHeld();
      await this.openMessage();
      if (held !== "" || heldLogprobs.length > 0) await this.text(held, heldLogprobs);
    }
    await this.close(status);
    return [...this.items];
  }

  private async call(callId: string, name: string): Promise<void> {
    this.dropHeld();
    await this.close("completed");
    this.open = { kind: "call", id: newObjectId("fc"), callId, name, args: "" };
    await this.listener?.added(this.items.length, this.openItem("in_progress"));
  }

  private async arguments(delta: string): Promise<void> {
    if (this.open?.kind !== "call") return; // the parser only sends arguments inside a call
    this.open.args += delta;
    await this.listener?.argumentsDelta(this.items.length, this.open.id, delta);
  }

  private dropHeld(): void {
    this.heldWhitespace = "";
    this.heldLogprobs = [];
  }

  private async openMessage(): Promise<void> {
    await this.close("completed");
    this.open = { kind: "message", id: newObjectId("msg"), text: "", logprobs: [] };
    await this.listener?.added(this.items.length, { ...outputMessage(this.open.id, "", "in_progress"), content: [] });
  }

  private async close(status: ItemStatus): Promise<void> {
    if (!this.open) return;
    const item = this.openItem(status);
    this.open = null;
    this.items.push(item);
    await this.listener?.done(this.items.length - 1, item);
  }

  private openItem(status: ItemStatus): Item {
    const o = this.open!;
    return o.kind === "message" ? outputMessage(o.id, o.text, status, o.logprobs.map(responseLogProb)) : functionCall(o.id, o.callId, o.name, o.args, status);
  }
}
