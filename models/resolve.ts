// Model resolution: a file, a directory of GGUFs, or an hf: URI; with none
// given, the first .gguf in the models dir, else a synthetic smoke-test model
// generated once.
import fs from "node:fs/promises";
import path from "node:path";
import { ensureDefaultSyntheticModel } from "./syntheticCache.js";

export class ModelResolutionError extends Error {}

export interface ResolvedModel {
  path: string;
  /** The id clients use: the file name without .gguf. */
  id: string;
  /** True when llamux generated it because no model was given (random weights). */
  generated: boolean;
}

const ALTERNATIVES = "use a local file (--model ./models/x.gguf), a directory of .gguf files, or generate one with 'llamux make-model --out ./models/x.gguf'";

async function firstGguf(dir: string): Promise<string | null> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  const names = entries
    .filter((e) => e.isFile() && e.name.toLowerCase().endsWith(".gguf"))
    .map((e) => e.name)
    .sort();
  return names[0] ? path.join(dir, names[0]) : null;
}

function idOf(file: string): string {
  return path.basename(file).replace(/\.gguf$/i, "");
}

export async function resolveModel(spec: string | null, opts: { modelsDir: string; cacheDir: string }): Promise<ResolvedModel> {
  if (spec === null) {
    const found = await firstGguf(opts.modelsDir);
    if (found) return { path: found, id: idOf(found), generated: false };
    const made = await ensureDefaultSyntheticModel(opts.modelsDir);
    return { path: made, id: idOf(made), generated: true };
  }
  if (spec.startsWith("hf:")) {
    try {
      // Loaded only here: the serving front otherwise never needs node-llama-cpp.
      const { resolveModelFile } = await import("node-llama-cpp");
      const file = await resolveModelFile(spec, { directory: opts.cacheDir, cli: false, verify: false });
      return { path: file, id: idOf(file), generated: false };
    } catch (err) {
      const reason = ((err as Error).message ?? String(err)).split("\n")[0];
      throw new ModelResolutionError(`cannot fetch ${spec} (${reason}); offline? ${ALTERNATIVES}`);
    }
  }
  const stat = await fs.stat(spec).catch(() => null);
  if (!stat) throw new ModelResolutionError(`model not found: ${spec}; ${ALTERNATIVES}`);
  if (stat.isDirectory()) {
    const found = await firstGguf(spec);
    if (!found) throw new ModelResolutionError(`no .gguf file in directory ${spec}; ${ALTERNATIVES}`);
    return { path: found, id: idOf(found), generated: false };
  }
  return { path: spec, id: idOf(spec), generated: false };
}
