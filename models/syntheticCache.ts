// The model `llamux serve` falls back to when none is given and none is found:
// generated once (tiny preset, seed 0), then found again by name.
import fs from "node:fs/promises";
import path from "node:path";
import { makeSyntheticModel } from "./synthetic.js";

export const DEFAULT_SYNTHETIC_NAME = "llamux-synthetic-tiny.gguf";

/** In-process callers asking at the same time share one generation. */
const pending = new Map<string, Promise<string>>();

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

async function generate(file: string): Promise<string> {
  if (await exists(file)) return file;
  await fs.mkdir(path.dirname(file), { recursive: true });
  // A per-process name, renamed into place: two servers starting together in
  // the same directory never write the same temporary file, and since the
  // content is deterministic whichever rename lands last changes nothing.
  const own = `${file}.${process.pid}.partial`;
  try {
    await makeSyntheticModel({ preset: "tiny", outPath: own, seed: 0 });
    await fs.rename(own, file);
  } finally {
    await fs.rm(own, { force: true });
  }
  return file;
}

/** Path of `<dir>/llamux-synthetic-tiny.gguf`, generating it first if it is missing. */
export async function ensureDefaultSyntheticModel(dir: string): Promise<string> {
  const file = path.resolve(dir, DEFAULT_SYNTHETIC_NAME);
  let job = pending.get(file);
  if (!job) {
    job = generate(file).finally(() => pending.delete(file));
    pending.set(file, job);
  }
  return job;
}
