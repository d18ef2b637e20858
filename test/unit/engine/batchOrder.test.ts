// The engine's batch prioritization (engine/batchOrder.ts) on plain items.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { BatchItem, Token } from "node-llama-cpp";
import { ascendingSequences, batchPlace } from "../../../engine/batchOrder.js";

const item = (place: number, tokens: number): BatchItem => ({
  tokens: Array.from({ length: tokens }, (_, i) => i as Token),
  logits: Array.from({ length: tokens }, (_, i) => (i === tokens - 1 ? true : undefined)),
  evaluationPriority: batchPlace(place).evaluationPriority,
});

describe("ascendingSequences", () => {
  test("lists every item by ascending place, each with all its tokens", () => {
    const items = [item(4, 1), item(0, 32), item(2, 1), item(1, 1)];
    const out = ascendingSequences({ items, size: 512 });
    assert.deepEqual(
      out.map((p) => p.item),
      [items[1], items[3], items[2], items[0]],
    );
    assert.deepEqual(
      out.map((p) => p.processAmount),
      [32, 1, 1, 1],
    );
  });

  test("keeps queue order for equal places", () => {
    const items = [item(3, 2), item(1, 1), item(3, 5)];
    assert.deepEqual(
      ascendingSequences({ items, size: 512 }).map((p) => p.item),
      [items[1], items[0], items[2]],
    );
  });

  test("stops at the batch size: the last item listed is cut, later ones wait", () => {
    const items = [item(2, 10), item(0, 6), item(1, 6)];
    const out = ascendingSequences({ items, size: 10 });
    assert.deepEqual(
      out.map((p) => [p.item, p.processAmount]),
      [
        [items[1], 6],
        [items[2], 4],
      ],
    );
  });

  test("does not reorder its input", () => {
    const items = [item(1, 1), item(0, 1)];
    ascendingSequences({ items, size: 8 });
    assert.deepEqual(
      items.map((i) => i.evaluationPriority),
      [1, 0],
    );
  });
});
