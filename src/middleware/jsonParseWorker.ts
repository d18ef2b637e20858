// Worker-thread side of JsonParsePool: decodes, checks and parses one large
// request body at a time, off the front's event loop. The checks that can
// refuse a body outright run here too, so a body refused for its shape is
// never cloned back to the main thread (cloning an object of 100,000 keys
// costs the main thread about as much as parsing it).
import { parentPort } from "node:worker_threads";
import { ApiError } from "../errors.js";
import { parseJsonBody, type ParseJob, type ParseReply } from "./jsonLimits.js";

if (!parentPort) throw new Error("jsonParseWorker runs as a worker thread");
const port = parentPort;

port.on("message", (job: ParseJob) => {
  let reply: ParseReply;
  try {
    reply = { id: job.id, ok: true, value: parseJsonBody(Buffer.from(job.body), job.limits) };
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError("invalid_json", "We could not parse the JSON body of your request: it is not valid JSON.");
    reply = { id: job.id, ok: false, error: { code: e.code, message: e.message, param: e.param } };
  }
  port.postMessage(reply);
});
