import assert from "node:assert/strict";
import { test } from "node:test";
import { truncationStart } from "../../../src/openai/truncation.js";

test("a start never leaves a function output without its call, and never passes the last item", () => {
  const items = [
    { type: "message" },
    { type: "function_call", call_id: "a" },
    { type: "function_call_output", call_id: "a" },
    { type: "message" },
    { type: "function_call_output", call_id: "b" }, // its call was never in the context: not ours to drop
    { type: "message" },
  ];
  assert.equal(truncationStart(items, 0), 0);
  assert.equal(truncationStart(items, 1), 1);
  assert.equal(truncationStart(items, 2), 3, "the output of the dropped call a goes with it");
  assert.equal(truncationStart(items, 4), 4);
  assert.equal(truncationStart(items, 99), 5);
  assert.equal(
    truncationStart(
      [
        { type: "function_call", call_id: "x" },
        { type: "function_call_output", call_id: "x" },
      ],
      1,
    ),
    1,
    "the newest item stays",
  );
});
