// Model text → assistant content and tool calls, incrementally (one push per
// engine delta, O(delta) work per push).
//
// Calls are Hermes-style blocks: <tool_call>{"name": ..., "arguments": {...}}</tool_call>.
//   - trusted (tool_choice required or a named function): the output grammar
//     wrote the text, so every block is a valid call and nothing else is there.
//     A call starts as soon as its name is read and its arguments stream out as
//     they come, as OpenAI streams them.
//   - untrusted (tool_choice auto): the model wrote what it liked. A block is
//     held until it closes, then becomes a call only if it is JSON naming a
//     declared function with an arguments object; otherwise it is content, as
//     written. Text outside blocks is content; a possible "<tool_call>" at the
//     end of a delta is held back until the next one says.
import { TOOL_CALL_CLOSE, TOOL_CALL_OPEN } from "../../../engine/index.js";

export type ToolCallEvent =
  | { type: "content"; text: string }
  | { type: "call"; index: number; id: string; name: string }
  | { type: "arguments"; index: number; text: string };

export interface ToolCallParserOptions {
  trusted: boolean;
  /** Functions a call may name (untrusted mode; trusted output names only these anyway). */
  functions: ReadonlySet<string>;
  /** false: after the first call, further blocks are content (parallel_tool_calls false). */
  parallel: boolean;
  newId: () => string;
}

const HEAD = /^\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*/;

export class ToolCallParser {
  private buffer = "";
  private inBlock = false;
  /** Trusted mode, inside a block: the call has started and its arguments are streaming. */
  private args: { started: boolean; depth: number; inString: boolean; escaped: boolean; done: boolean } | null = null;
  private calls = 0;

  constructor(private readonly opts: ToolCallParserOptions) {}

  get callCount(): number {
    return this.calls;
  }

  push(text: string): ToolCallEvent[] {
    const events: ToolCallEvent[] = [];
    this.buffer += text;
    // Each pass either changes state (a block opens or closes) or waits for more text.
    while (this.inBlock ? this.block(events) : this.outside(events, false));
    return events;
  }

  /** End of generation: whatever is held is released (an unfinished untrusted block is content). */
  flush(): ToolCallEvent[] {
    const events: ToolCallEvent[] = [];
    if (!this.inBlock) this.outside(events, true);
    else if (!this.opts.trusted) this.content(events, TOOL_CALL_OPEN + this.buffer);
    else if (this.args && !this.args.done) this.scanArguments(events);
    this.buffer = "";
    return events;
  }

  /** Outside a block: content up to the next opening tag. True when a block opened. */
  private outside(events: ToolCallEvent[], final: boolean): boolean {
    const mayOpen = this.opts.parallel || this.calls === 0;
    const open = mayOpen ? this.buffer.indexOf(TOOL_CALL_OPEN) : -1;
    if (open >= 0) {
      this.content(events, this.buffer.slice(0, open));
      this.buffer = this.buffer.slice(open + TOOL_CALL_OPEN.length);
      this.inBlock = true;
      this.args = null;
      return true;
    }
    const keep = final || !mayOpen ? 0 : partialSuffix(this.buffer, TOOL_CALL_OPEN);
    this.content(events, this.buffer.slice(0, this.buffer.length - keep));
    this.buffer = this.buffer.slice(this.buffer.length - keep);
    return false;
  }

  /** Inside a block. True when it closed. */
  private block(events: ToolCallEvent[]): boolean {
    if (!this.opts.trusted) {
      const close = this.buffer.indexOf(TOOL_CALL_CLOSE);
      if (close < 0) return false;
      const inner = this.buffer.slice(0, close);
      this.buffer = this.buffer.slice(close + TOOL_CALL_CLOSE.length);
      this.inBlock = false;
      const call = parseCall(inner, this.opts.functions);
      if (!call) {
        this.content(events, TOOL_CALL_OPEN + inner + TOOL_CALL_CLOSE);
        return true;
      }
      const index = this.calls++;
      events.push({ type: "call", index, id: this.opts.newId(), name: call.name }, { type: "arguments", index, text: call.arguments });
      return true;
    }
    if (!this.args) {
      const head = HEAD.exec(this.buffer);
      if (!head) return false; // the name is not complete yet
      events.push({ type: "call", index: this.calls, id: this.opts.newId(), name: JSON.parse(head[1]!) as string });
      this.calls++;
      this.buffer = this.buffer.slice(head[0].length);
      this.args = { started: false, depth: 0, inString: false, escaped: false, done: false };
    }
    if (!this.args.done) this.scanArguments(events);
    if (!this.args.done) return false;
    const close = this.buffer.indexOf(TOOL_CALL_CLOSE);
    if (close < 0) return false;
    this.buffer = this.buffer.slice(close + TOOL_CALL_CLOSE.length);
    this.inBlock = false;
    this.args = null;
    return true;
  }

  /** Trusted mode: forwards the arguments value as it arrives, stopping where it ends. */
  private scanArguments(events: ToolCallEvent[]): void {
    const s = this.args!;
    if (!s.started) {
      // Whitespace the grammar allows before the value is not part of it.
      const start = this.buffer.search(/\S/);
      if (start < 0) {
        this.buffer = "";
        return;
      }
      this.buffer = this.buffer.slice(start);
      s.started = true;
    }
    let i = 0;
    for (; i < this.buffer.length && !s.done; i++) {
      const c = this.buffer[i]!;
      if (s.inString) {
        if (s.escaped) s.escaped = false;
        else if (c === "\\") s.escaped = true;
        else if (c === '"') s.inString = false;
      } else if (c === '"') s.inString = true;
      else if (c === "{" || c === "[") s.depth++;
      else if (c === "}" || c === "]") {
        s.depth--;
        if (s.depth === 0) s.done = true;
      }
    }
    if (i > 0) events.push({ type: "arguments", index: this.calls - 1, text: this.buffer.slice(0, i) });
    this.buffer = this.buffer.slice(i);
  }

  private content(events: ToolCallEvent[], text: string): void {
    if (!text) return;
    // Trusted output has nothing but calls: the newlines between blocks are not content.
    if (this.opts.trusted) return;
    const last = events.at(-1);
    if (last?.type === "content") last.text += text;
    else events.push({ type: "content", text });
  }
}

/** The longest suffix of `text` that is a proper prefix of `tag`. */
function partialSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(tag.slice(0, n))) return n;
  }
  return 0;
}

/** An untrusted block → a call, or null when it is not one. */
function parseCall(inner: string, functions: ReadonlySet<string>): { name: string; arguments: string } | null {
  let value: unknown;
  try {
    value = JSON.parse(inner);
  } catch {
    return null;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const { name, arguments: args } = value as { name?: unknown; arguments?: unknown };
  if (typeof name !== "string" || !functions.has(name)) return null;
  // Some models write the arguments as a JSON string; both mean the same object.
  let parsed = args;
  if (typeof args === "string") {
    try {
      parsed = JSON.parse(args);
    } catch {
      return null;
    }
  }
  if (parsed === undefined) parsed = {};
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return null;
  return { name, arguments: JSON.stringify(parsed) };
}

export interface ParsedToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** Events, in order → all the content and every call with its arguments joined. */
export function assembleToolCallEvents(events: readonly ToolCallEvent[]): { content: string; calls: ParsedToolCall[] } {
  let content = "";
  const calls: ParsedToolCall[] = [];
  for (const e of events) {
    if (e.type === "content") content += e.text;
    else if (e.type === "call") calls.push({ id: e.id, name: e.name, arguments: "" });
    else calls[e.index]!.arguments += e.text;
  }
  return { content, calls };
}

/** The whole text at once: content (null when there are calls and no other text) and calls. */
export function parseToolCalls(text: string, opts: ToolCallParserOptions): { content: string | null; calls: ParsedToolCall[] } {
  const parser = new ToolCallParser(opts);
  const { content, calls } = assembleToolCallEvents([...parser.push(text), ...parser.flush()]);
  if (calls.length === 0) return { content, calls };
  const trimmed = content.trim();
  return { content: trimmed.length > 0 ? trimmed : null, calls };
}
