// openai-python against the real server: test/conformance/python/flows.py run
// with the pinned client in .venv-conformance/ (which .ci/run creates). Each
// flow is one test here: chat loops appending the returned message (as the
// object and as model_dump()), a forced tool loop with pydantic_function_tool,
// chat .parse() with Pydantic (one model with Field(ge=0)), responses.parse
// with its output items sent back, previous_response_id, streaming.
//
// Without the virtual environment the tests skip, saying how to create it;
// under CI (CI=true) they fail instead, so that CI cannot pass without them.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO_ROOT } from "../integration/helpers/server.js";
import { KEYS, startConformanceServer, type ConformanceServer } from "./helpers.js";

const PYTHON = path.join(REPO_ROOT, ".venv-conformance", "bin", "python");
const FLOWS_PY = path.join(REPO_ROOT, "test", "conformance", "python", "flows.py");
const INSTALL = "python3 -m venv .venv-conformance && .venv-conformance/bin/pip install -r test/conformance/python/requirements.txt (as .ci/run does)";
const FLOWS = ["chat_loop", "chat_tool_loop", "chat_parse", "chat_parse_ge", "responses_parse", "responses_multi_turn", "streaming"] as const;

const venv = fs.existsSync(PYTHON);
const skip = venv ? false : `openai-python is not installed: ${INSTALL}`;

let s: ConformanceServer | undefined;
/** Each flow's line from flows.py: "ok" or the error it printed. */
const outcomes = new Map<string, string>();
let stderr = "";

describe("openai-python", () => {
  test("the pinned client is installed (required under CI)", { skip: process.env.CI === "true" ? false : skip }, () => {
    assert.ok(venv, `openai-python is not installed: ${INSTALL}`);
  });

  before(async () => {
    if (!venv) return;
    s = await startConformanceServer();
    const child = spawn(PYTHON, [FLOWS_PY, s.baseURL, s.modelId, KEYS.app], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", () => resolve());
    });
    for (const line of stdout.split("\n")) {
      const m = /^(ok|FAIL) (\w+)(?:: (.*))?$/.exec(line);
      if (m) outcomes.set(m[2]!, m[1] === "ok" ? "ok" : (JSON.parse(m[3]!) as string));
    }
  });
  after(async () => {
    await s?.close();
  });

  for (const flow of FLOWS) {
    test(flow, { skip }, () => {
      const outcome = outcomes.get(flow);
      assert.ok(outcome !== undefined, `flows.py reported nothing for ${flow}; its stderr:\n${stderr}`);
      assert.equal(outcome, "ok", outcome);
    });
  }
});
