// Responses API bodies: one Response object, or the documented event stream
// (`event:` + `data:` frames with sequence_number, no [DONE]):
//   response.created, response.in_progress, response.output_item.added,
//   response.content_part.added, response.output_text.delta (one per engine
//   delta), response.output_text.done, response.content_part.done,
//   response.output_item.done, then response.completed or response.incomplete;
//   response.failed when the generation or its storage fails midway. With
//   tools, each call the model writes is a function_call item of its own
//   (output_item.added, response.function_call_arguments.delta as its
//   arguments are generated, .done, output_item.done), in the order written.
// Either way the finished response is committed (stored, appended to its
// conversation) before the client is told it is complete.
import type { Response } from "express";
import type { Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import { SseWriter } from "../../sse.js";
import type { Item } from "../../store/conversationStore.js";
import { collect, type Admitted } from "../generation.js";
import type { GenerationMeta } from "../runGeneration.js";
import { responseEventLogProb, responseLogProb } from "../logprobs.js";
import { ToolCallParser } from "../tools/toolCallParser.js";
import type { ToolParsing } from "../tools/tools.js";
import { newObjectId } from "./items.js";
import { OutputItems, type OutputListener } from "./outputItems.js";
import { finishedStatus, responseJson, type ResponseEcho, type ResponseObject } from "./responseObject.js";

export interface ResponseRun {
  echo: ResponseEcho;
  /** How tool calls are read out of the model's text; null: no tools, the text is the message. */
  tools: ToolParsing | null;
  /** Makes the finished response durable; resolves before it is acknowledged. */
  commit: (response: ResponseObject, output: Item[]) => Promise<void>;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function toolParser(run: ResponseRun): ToolCallParser | null {
  return run.tools ? new ToolCallParser({ ...run.tools, newId: () => newObjectId("call") }) : null;
}

function finishedBody(run: ResponseRun, output: Item[], finish: "stop" | "length", usage: Usage): ResponseObject {
  const status = finishedStatus(finish);
  return responseJson(run.echo, { status, output, usage, error: null, completedAtSeconds: status === "completed" ? nowSeconds() : null });
}

export async function respondResponse(res: Response, choice: Admitted, meta: GenerationMeta, run: ResponseRun): Promise<void> {
  const out = await collect(choice);
  await meta.onUsage(out.usage);
  const items = new OutputItems();
  const parser = toolParser(run);
  if (parser) await items.push([...parser.push(out.text), ...parser.flush()]);
  else await items.text(out.text, out.logprobs);
  const output = await items.finish(finishedStatus(out.finishReason));
  const body = finishedBody(run, output, out.finishReason, out.usage);
  await run.commit(body, output);
  res.json(body);
}

/** Receives one stream event; sequence numbers are the sink's. */
export type EventSink = (type: string, fields: object) => Promise<void>;

/** How a generation's output ended, before anything is committed or the terminal event sent. */
export type GenerationOutcome =
  | { kind: "finished"; body: ResponseObject; output: Item[] }
  /** The engine stream closed without a finish (a cancel): the output so far, items cut marked incomplete. */
  | { kind: "cut"; output: Item[] }
  /** An engine error, or a bug (`error` not an ApiError). */
  | { kind: "failed"; error: unknown; output: Item[] };

/** The Response object of a response that failed midway, with the output it had. */
export function failedBody(run: ResponseRun, output: Item[], err: unknown): ResponseObject {
  const message = err instanceof ApiError ? err.message : "The server had an error while processing your request.";
  return responseJson(run.echo, { status: "failed", output, usage: null, error: { code: "server_error", message }, completedAtSeconds: null });
}

/**
 * Reads `choice` to its end and sends its output events to `send`, from the
 * first response.output_item.added to the last response.output_item.done;
 * the events before (created, in_progress) and the terminal one are the
 * caller's, who commits first.
 */
export async function generateEvents(choice: Admitted, meta: GenerationMeta, run: ResponseRun, send: EventSink): Promise<GenerationOutcome> {
  const part = (itemId: string, outputIndex: number) => ({ item_id: itemId, output_index: outputIndex, content_index: 0 });
  const listener: OutputListener = {
    added: async (outputIndex, item) => {
      await send("response.output_item.added", { output_index: outputIndex, item });
      if (item.type === "message")
        await send("response.content_part.added", { ...part(item.id, outputIndex), part: { type: "output_text", text: "", annotations: [], logprobs: [] } });
    },
    textDelta: (outputIndex, item, delta, logprobs) =>
      send("response.output_text.delta", { ...part(item.id, outputIndex), delta, logprobs: logprobs.map((e) => responseEventLogProb(responseLogProb(e))) }),
    argumentsDelta: (outputIndex, itemId, delta) => send("response.function_call_arguments.delta", { item_id: itemId, output_index: outputIndex, delta }),
    done: async (outputIndex, item) => {
      if (item.type === "message") {
        const text = item.content[0]!;
        const logprobs = text.type === "output_text" ? (text.logprobs as Array<ReturnType<typeof responseLogProb>>).map(responseEventLogProb) : [];
        await send("response.output_text.done", { ...part(item.id, outputIndex), text: text.type === "refusal" ? text.refusal : text.text, logprobs });
        await send("response.content_part.done", { ...part(item.id, outputIndex), part: text });
      } else if (item.type === "function_call") {
        await send("response.function_call_arguments.done", { item_id: item.id, output_index: outputIndex, name: item.name, arguments: item.arguments });
      }
      await send("response.output_item.done", { output_index: outputIndex, item });
    },
  };
  const items = new OutputItems(listener);
  const parser = toolParser(run);
  const snapshot = () => items.snapshot.map((item) => ({ ...item, status: item.status === "in_progress" ? ("incomplete" as const) : item.status }));
  try {
    // Without tools the output is one message, announced before its first token.
    if (!parser) await items.startMessage();
    let end: { finish: "stop" | "length"; usage: Usage } | null = null;
    for await (const ev of choice.events) {
      if (ev.type === "error") throw fromEngineError(ev.error);
      if (ev.type !== "delta") continue;
      if (ev.text || ev.logprobs?.length) {
        if (parser) await items.push(parser.push(ev.text));
        else await items.text(ev.text, ev.logprobs);
      }
      if (ev.finish && ev.usage) {
        end = { finish: ev.finish, usage: ev.usage };
        break;
      }
    }
    if (!end) return { kind: "cut", output: snapshot() };
    await meta.onUsage(end.usage);
    if (parser) await items.push(parser.flush());
    const output = await items.finish(finishedStatus(end.finish));
    return { kind: "finished", body: finishedBody(run, output, end.finish, end.usage), output };
  } catch (err) {
    return { kind: "failed", error: err, output: snapshot() };
  }
}

export async function streamResponse(res: Response, choice: Admitted, meta: GenerationMeta, run: ResponseRun): Promise<void> {
  const sse = new SseWriter(res);
  let sequenceNumber = 0;
  const send: EventSink = (type, fields) => sse.sendEvent(type, { type, ...fields, sequence_number: sequenceNumber++ });

  sse.open();
  const inProgress = responseJson(run.echo, { status: "in_progress", output: [], usage: null, error: null, completedAtSeconds: null });
  await send("response.created", { response: inProgress });
  await send("response.in_progress", { response: inProgress });
  const outcome = await generateEvents(choice, meta, run, send);
  try {
    let error: unknown;
    let output = outcome.output;
    if (outcome.kind === "finished") {
      try {
        await run.commit(outcome.body, outcome.output);
        await send(outcome.body.status === "completed" ? "response.completed" : "response.incomplete", { response: outcome.body });
        return;
      } catch (err) {
        error = err;
        output = outcome.output;
      }
    } else if (outcome.kind === "cut") {
      // The client left (its abort cancelled the generation): nothing to tell, nothing to keep.
      if (sse.isClosed) return;
      error = fromEngineError({ code: "engine_error", param: null, message: "The request was cancelled." });
    } else {
      error = outcome.error;
    }
    await send("response.failed", { response: failedBody(run, output, error) });
    // Anything but an ApiError is a bug: let the error handler log it.
    if (!(error instanceof ApiError)) {
      sse.end();
      throw error;
    }
  } finally {
    sse.end();
  }
}
