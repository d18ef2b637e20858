// `llamux make-model`: writes a synthetic GGUF (random weights, real tokenizer).
import { parseArgs } from "node:util";
import { defaultVocabSource, makeSyntheticModel, PRESETS, type PresetName } from "./synthetic.js";

function help(): string {
  return `Usage: llamux make-model --out FILE [--preset tiny|bench] [--vocab-from GGUF] [--seed N]

Writes a llama-architecture GGUF with deterministic random weights, the
tokenizer of --vocab-from and a ChatML chat template. Its output is noise: it
exists for tests (tiny: ~4M params, ~5 MB) and benchmarks (bench: ~246M
params, Q8_0, ~250 MiB). The same preset, seed and vocabulary give the same bytes.

  --out FILE          where to write the model (required; written via FILE.tmp)
  --preset NAME       ${Object.keys(PRESETS).join(" | ")}  [default: tiny]
  --vocab-from GGUF   copy tokenizer.* from this model [default: ${defaultVocabSource()}]
  --seed N            weight seed, an integer in [0, 4294967295] [default: 0]
  -h, --help          show this help`;
}

const fail = (message: string): number => {
  console.error(`llamux make-model: ${message}`);
  return 2;
};

/** Runs the command; returns the process exit code (0 ok, 1 failed, 2 bad arguments). */
export async function makeModelMain(argv: string[]): Promise<number> {
  let values: { out?: string; preset?: string; "vocab-from"?: string; seed?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        out: { type: "string" },
        preset: { type: "string" },
        "vocab-from": { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    // parseArgs messages can span lines; the first says what was wrong.
    return fail(`${(err as Error).message.split("\n")[0]} (see llamux make-model --help)`);
  }
  if (values.help) {
    console.log(help());
    return 0;
  }
  const preset = values.preset ?? "tiny";
  if (!Object.hasOwn(PRESETS, preset)) return fail(`unknown preset '${preset}' (${Object.keys(PRESETS).join(" | ")})`);
  const out = values.out;
  if (!out) return fail("--out FILE is required");
  const seedText = values.seed ?? "0";
  const seed = /^\d+$/.test(seedText) ? Number(seedText) : NaN;
  if (!(seed >= 0 && seed <= 0xffffffff)) return fail(`--seed must be an integer in [0, 4294967295], got '${seedText}'`);

  const startedMs = Date.now();
  const interactive = process.stderr.isTTY === true;
  let shownPct = -1;
  const progress = (fraction: number) => {
    // Whole tens of percent: a redrawn line on a terminal, a few plain lines in logs.
    const pct = Math.floor(fraction * 10) * 10;
    if (pct === shownPct) return;
    shownPct = pct;
    process.stderr.write(interactive ? `\rwriting ${preset} model: ${pct}%` : `writing ${preset} model: ${pct}%\n`);
  };
  let made: Awaited<ReturnType<typeof makeSyntheticModel>>;
  try {
    made = await makeSyntheticModel({ preset: preset as PresetName, outPath: out, vocabFrom: values["vocab-from"], seed, onProgress: progress });
  } catch (err) {
    if (interactive && shownPct >= 0) process.stderr.write("\n");
    console.error(`llamux make-model: failed: ${(err as Error).message}`);
    return 1;
  }
  if (interactive) process.stderr.write("\n");
  const mib = (made.bytes / 1024 / 1024).toFixed(1);
  const seconds = ((Date.now() - startedMs) / 1000).toFixed(1);
  console.log(
    `wrote ${made.path}: ${mib} MiB (${made.bytes} bytes), ${(made.parameters / 1e6).toFixed(1)}M parameters, ` +
      `preset ${preset}, seed ${seed}, in ${seconds} s (random weights: for tests and benchmarks only)`,
  );
  return 0;
}
