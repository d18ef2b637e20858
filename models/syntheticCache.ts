// The model `llamux serve` falls back to when none is given and none is found:
// generated once, then found again as the first .gguf of the models dir.
import fs from "node:fs";
import path from "node:path";
import { makeSyntheticModel } from "./synthetic.js";

export const DEFAULT_SYNTHETIC_NAME = "llamux-synthetic-tiny.gguf";

export async function ensureDefaultSyntheticModel(dir: string): Promise<string> {
  const file = path.join(dir, DEFAULT_SYNTHETIC_NAME);
  if (fs.existsSync(file)) return file;
  await makeSyntheticModel({ preset: "tiny", outPath: file, seed: 0 });
  return file;
}
