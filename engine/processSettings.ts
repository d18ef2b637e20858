// How an engine process runs: the V8 flags and environment the front forks the
// worker with. `llamux bench ceiling` measures under the same ones (it re-runs
// itself with them), so the ceiling and the server compared with it differ in
// llamux's own work only. Runs in the front: must not import node-llama-cpp.

/**
 * V8 flags. The worker's JavaScript makes small, short-lived objects per step;
 * V8's default 16 MiB semi-spaces let its young generation grow to tens of MiB
 * of resident memory for nothing (measured: 23 MiB less RSS at 1 MiB,
 * throughput unchanged).
 */
export const ENGINE_EXEC_ARGV: readonly string[] = ["--max-semi-space-size=1"];

/**
 * Environment defaults; the caller's own environment overrides them.
 * - MALLOC_ARENA_MAX: glibc gives each thread that allocates its own malloc
 *   arena, and freed memory stays in them: two arenas hold 10 MiB less, with
 *   no measurable cost per step.
 * - MALLOC_MMAP_THRESHOLD_: glibc raises its mmap threshold each time it
 *   frees a large mmap'd block, so later large buffers come from the heap and
 *   stay there once freed. A fixed 512 KiB keeps bigger ones in mmap, returned
 *   on free, while the per-token sampler buffers (n_vocab × 12 bytes: 384 KiB
 *   for a 32,000-token vocabulary) stay on the faster heap. Measured on the
 *   bench model, 16 streams: the server's peak 498–505 → 490–492 MiB (each
 *   page counted once, bench/sampleMemory.ts).
 * - UV_THREADPOOL_SIZE: node-llama-cpp runs every decode and every sampler on
 *   libuv's pool, and each decode starts llama.cpp's own compute threads, as
 *   many as --threads. Extra pool threads only compete with those for the
 *   cores. One pool thread, measured with `bench ceiling --threads 2` on the
 *   bench model: 36.5 → 43.8 tok/s at 1 stream, 67.5 → 86.2 at 4, 112.1 →
 *   124.6 at 16. libuv reads it once, when the pool first starts (during
 *   module loading), so it can only be set before the process starts.
 */
export const ENGINE_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "524288",
  UV_THREADPOOL_SIZE: "1",
};

/** The flags an engine process runs with: the engine's, then the caller's own, which win. */
export function engineExecArgv(callerArgv: readonly string[] = process.execArgv): string[] {
  return [...ENGINE_EXEC_ARGV, ...callerArgv];
}

/** The environment an engine process runs with: ENGINE_ENV under `base`, then `extra`. */
export function engineEnv(base: NodeJS.ProcessEnv = process.env, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...ENGINE_ENV, ...base, ...extra };
}
