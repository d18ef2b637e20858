// Responses API bodies: one Response object, or the documented event stream
// (`event:` + `data:` frames with sequence_number, no [DONE]):
//   response.created, response.in_progress, response.output_item.added,
//   response.content_part.added, response.output_text.delta (one per engine
//   delta), response.output_text.done, response.content_part.done,
//   response.output_item.done, then response.completed or response.incomplete;
//   response.failed when the generation or its storage fails midway.
// Either way the finished response is committed (stored, appended to its
// conversation) before the client is told it is complete.
import type { Response } from "express";
import type { Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import { SseWriter } from "../../sse.js";
import type { MessageItem } from "../../store/conversationStore.js";
import { collect, type Admitted } from "../generation.js";
import type { GenerationMeta } from "../runGeneration.js";
import { finishedStatus, outputMessage, responseJson, type ResponseEcho, type ResponseObject } from "./responseObject.js";

export interface ResponseRun {
  echo: ResponseEcho;
  outputItemId: string;
  /** Makes the finished response durable; resolves before it is acknowledged. */
  commit: (response: ResponseObject, output: MessageItem) => Promise<void>;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function finished(run: ResponseRun, text: string, finish: "stop" | "length", usage: Usage): { item: MessageItem; body: ResponseObject } {
  const status = finishedStatus(finish);
  const item = outputMessage(run.outputItemId, text, status);
  const body = responseJson(run.echo, { status, output: [item], usage, error: null, completedAtSeconds: status === "completed" ? nowSeconds() : null });
  return { item, body };
}

export async function respondResponse(res: Response, choice: Admitted, meta: GenerationMeta, run: ResponseRun): Promise<void> {
  const out = await collect(choice);
  meta.onUsage(out.usage);
  const { item, body } = finished(run, out.text, out.finishReason, out.usage);
  await run.commit(body, item);
  res.json(body);
}

export async function streamResponse(res: Response, choice: Admitted, meta: GenerationMeta, run: ResponseRun): Promise<void> {
  const sse = new SseWriter(res);
  let sequenceNumber = 0;
  const send = (type: string, fields: object) => sse.sendEvent(type, { type, ...fields, sequence_number: sequenceNumber++ });
  const itemId = run.outputItemId;
  const at = { item_id: itemId, output_index: 0, content_index: 0 };

  sse.open();
  const inProgress = responseJson(run.echo, { status: "in_progress", output: [], usage: null, error: null, completedAtSeconds: null });
  await send("response.created", { response: inProgress });
  await send("response.in_progress", { response: inProgress });
  await send("response.output_item.added", { output_index: 0, item: { ...outputMessage(itemId, "", "in_progress"), content: [] } });
  await send("response.content_part.added", { ...at, part: { type: "output_text", text: "", annotations: [], logprobs: [] } });
  let text = "";
  try {
    let end: { finish: "stop" | "length"; usage: Usage } | null = null;
    for await (const ev of choice.events) {
      if (ev.type === "error") throw fromEngineError(ev.error);
      if (ev.type !== "delta") continue;
      if (ev.text) {
        text += ev.text;
        await send("response.output_text.delta", { ...at, delta: ev.text, logprobs: [] });
      }
      if (ev.finish && ev.usage) {
        end = { finish: ev.finish, usage: ev.usage };
        break;
      }
    }
    if (!end) {
      // The client left (its abort cancelled the generation): nothing to tell, nothing to keep.
      if (sse.isClosed) return;
      throw fromEngineError({ code: "engine_error", param: null, message: "The request was cancelled." });
    }
    meta.onUsage(end.usage);
    const { item, body } = finished(run, text, end.finish, end.usage);
    const part = item.content[0]!;
    await send("response.output_text.done", { ...at, text, logprobs: [] });
    await send("response.content_part.done", { ...at, part });
    await send("response.output_item.done", { output_index: 0, item });
    await run.commit(body, item);
    await send(body.status === "completed" ? "response.completed" : "response.incomplete", { response: body });
  } catch (err) {
    const message = err instanceof ApiError ? err.message : "The server had an error while processing your request.";
    const failed = responseJson(run.echo, {
      status: "failed",
      output: [outputMessage(itemId, text, "incomplete")],
      usage: null,
      error: { code: "server_error", message },
      completedAtSeconds: null,
    });
    await send("response.failed", { response: failed });
    // Anything but an ApiError is a bug: let the error handler log it.
    if (!(err instanceof ApiError)) {
      sse.end();
      throw err;
    }
  } finally {
    sse.end();
  }
}
