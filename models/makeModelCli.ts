// `llamux make-model`: writes a synthetic GGUF (random weights, real tokenizer).
import { parseArgs } from "node:util";
import { defaultVocabSource, makeSyntheticModel, PRESETS, type PresetName } from "./synthetic.js";

const HELP = `Usage: llamux make-model --out FILE [--preset tiny|bench] [--vocab-from GGUF] [--seed N]

Writes a llama-architecture GGUF with deterministic random weights, the
tokenizer of --vocab-from and a ChatML chat template. Its output is noise: it
exists for tests (tiny, a few MB) and benchmarks (bench, ~250M params, Q8_0).

  --out FILE          where to write the model (required)
  --preset NAME       tiny | bench  [default: tiny]
  --vocab-from GGUF   copy the tokenizer from this model [default: ${defaultVocabSource()}]
  --seed N            weight seed, a non-negative integer [default: 0]`;

export async function makeModelMain(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { out: { type: "string" }, preset: { type: "string" }, "vocab-from": { type: "string" }, seed: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    }));
  } catch (err) {
    console.error(`llamux make-model: ${(err as Error).message}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const preset = (values.preset as string | undefined) ?? "tiny";
  if (!(preset in PRESETS)) {
    console.error(`llamux make-model: unknown preset '${preset}' (tiny | bench)`);
    return 2;
  }
  const out = values.out as string | undefined;
  if (!out) {
    console.error("llamux make-model: --out FILE is required");
    return 2;
  }
  const seed = Number(values.seed ?? 0);
  if (!Number.isInteger(seed) || seed < 0) {
    console.error(`llamux make-model: --seed must be a non-negative integer, got '${values.seed}'`);
    return 2;
  }
  const started = Date.now();
  let shown = -1;
  const made = await makeSyntheticModel({
    preset: preset as PresetName,
    outPath: out,
    vocabFrom: values["vocab-from"] as string | undefined,
    seed,
    onProgress: (f) => {
      const pct = Math.floor(f * 10) * 10;
      if (pct !== shown) process.stderr.write(`\rwriting ${preset} model: ${(shown = pct)}%`);
    },
  });
  process.stderr.write("\n");
  console.log(
    `wrote ${made.path}: ${(made.bytes / 1024 / 1024).toFixed(1)} MiB, ${(made.parameters / 1e6).toFixed(1)}M parameters, ` +
      `seed ${seed}, in ${((Date.now() - started) / 1000).toFixed(1)} s (random weights: for tests and benchmarks only)`,
  );
  return 0;
}
