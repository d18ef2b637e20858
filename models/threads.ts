// The default compute thread count, in a module of its own: the front process
// needs it for its configuration but must not load node-llama-cpp (tens of MiB
// of JavaScript that only the engine worker uses).
import os from "node:os";

/** Physical cores, the right default for llama.cpp's compute threads. */
export function defaultThreads(): number {
  // os.availableParallelism counts logical CPUs; llama.cpp scales with physical
  // cores, and on SMT machines using every logical CPU slows it down. Halving is
  // the usual estimate when we cannot read the topology; never go below 1.
  const logical = os.availableParallelism();
  return logical >= 4 ? Math.floor(logical / 2) : logical;
}
