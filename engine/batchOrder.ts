// Decode batches listed in ascending sequence order, so llama.cpp reads the
// model's weights once per step instead of once per run of sequences.
//
// node-llama-cpp gives every sequence its own KV stream (kv_unified = false).
// llama.cpp then cuts a decode into micro-batches ("ubatches"), each one
// gathered greedily in batch order from sequences whose ids follow one
// another (llama_batch_allocr::split_equal with sequential = true), and
// computes each ubatch as its own graph: every ubatch reads all the weights.
// A step listing sequences 4..15 then 0..3 costs two passes where 0..15
// costs one. node-llama-cpp lists a batch in the order evaluations reached
// its queue, which follows how many promise hops each took (a new generator
// takes more than a resumed one), not the sequence ids.
//
// So the engine tags each evaluation with its slot's index in
// `evaluationPriority`, which node-llama-cpp (3.22.1) only hands to the
// batch's prioritization strategy, and the strategy below lists the batch by
// it. test/integration/batchOrder.test.ts fails if that stops holding.
// Measured on the bench model at 16 streams (2 threads, CPU): every
// engine step was two ubatches and decoded 16 tokens in 100-115 ms against
// 85-95 ms for the same batch in one ubatch.
import type { BatchingOptions, CustomBatchingPrioritizationStrategy, EvaluationPriority, PrioritizedBatchItem } from "node-llama-cpp";

/** The evaluation option that places a slot's tokens in the batch: by slot (= sequence) index. */
export function batchPlace(slotIndex: number): { evaluationPriority: EvaluationPriority } {
  // EvaluationPriority is typed 1..5 for node-llama-cpp's own strategies; ours reads any number.
  return { evaluationPriority: slotIndex as EvaluationPriority };
}

/**
 * The whole batch in ascending place (stable for equal places), each item
 * taking all its tokens until `size` runs out. The engine never queues more
 * than a step's token budget, which the batch size covers.
 */
export const ascendingSequences: CustomBatchingPrioritizationStrategy = ({ items, size }) => {
  const out: PrioritizedBatchItem[] = [];
  let left = size;
  for (const item of [...items].sort((a, b) => a.evaluationPriority - b.evaluationPriority)) {
    if (left <= 0) break;
    const processAmount = Math.min(item.tokens.length, left);
    out.push({ item, processAmount });
    left -= processAmount;
  }
  return out;
};

/** The engine context's batching: with it, the places the engine gives decide each batch's order. */
export const ENGINE_BATCHING: BatchingOptions = { itemPrioritizationStrategy: ascendingSequences };
