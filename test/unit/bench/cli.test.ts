// Argument handling only: every case here fails (or prints help) before any
// request is sent or any model is loaded.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { benchMain, concurrencyLevels, positiveInt } from "../../../bench/cli.js";

let dir: string;
const messages: string[] = [];
const originalError = console.error;
const originalLog = console.log;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-bench-cli-"));
  console.error = (...args: unknown[]) => void messages.push(args.join(" "));
  console.log = (...args: unknown[]) => void messages.push(args.join(" "));
});
after(() => {
  console.error = originalError;
  console.log = originalLog;
  fs.rmSync(dir, { recursive: true, force: true });
});

async function exitCode(argv: string[]): Promise<{ code: number; said: string }> {
  messages.length = 0;
  const code = await benchMain(argv);
  return { code, said: messages.join("\n") };
}

test("--help prints the options of both commands and exits 0", async () => {
  for (const argv of [["--help"], ["ceiling", "--help"]]) {
    const { code, said } = await exitCode(argv);
    assert.equal(code, 0);
    for (const opt of [
      "--url",
      "--concurrency",
      "--requests",
      "--prompt-tokens",
      "--max-tokens",
      "--api-key",
      "--json",
      "--endpoint",
      "--no-ignore-eos",
      "--ceiling-json",
      "--threads",
      "--gpu",
      "--ctx-per-slot",
    ]) {
      assert.ok(said.includes(opt), `help lacks ${opt}`);
    }
  }
});

test("bad arguments give one line and exit 2", async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /needs --url URL and --model ID/],
    [["--url", "http://127.0.0.1:1"], /needs --url URL and --model ID/],
    [["--url", "nope", "--model", "m"], /--url must be an http\(s\) URL/],
    [["--url", "http://h", "--model", "m", "--concurrency", "1,,4"], /--concurrency must be/],
    [["--url", "http://h", "--model", "m", "--concurrency", "0"], /--concurrency must be/],
    [["--url", "http://h", "--model", "m", "--requests", "2.5"], /--requests must be a positive integer/],
    [["--url", "http://h", "--model", "m", "--max-tokens", ""], /--max-tokens must be a positive integer/],
    [["--url", "http://h", "--model", "m", "--endpoint", "embeddings"], /--endpoint must be chat or completions/],
    [["--url", "http://h", "--model", "m", "--ceiling-json", path.join(os.tmpdir(), "no-such-llamux-file.json")], /--ceiling-json .*ENOENT/],
    [["--url", "http://h", "--model", "m", "--bogus"], /Unknown option '--bogus'/],
    [["ceiling"], /bench ceiling needs --model FILE/],
    [["ceiling", "--model", "/no/such/model.gguf"], /no such file/],
    [["ceiling", "--model", "PLACEHOLDER", "--gpu", "tpu"], /--gpu must be one of/],
    [["ceiling", "--model", "PLACEHOLDER", "--threads=-1"], /--threads must be a positive integer/],
    [["ceiling", "--model", "PLACEHOLDER", "--threads", "-1"], /--threads' argument is ambiguous/],
    [["ceiling", "--model", "PLACEHOLDER", "--ctx-per-slot", "0"], /--ctx-per-slot must be a positive integer/],
    [
      ["ceiling", "--model", "PLACEHOLDER", "--ctx-per-slot", "64"],
      /--ctx-per-slot: a context of 64 tokens per sequence cannot hold 32 prompt \+ 64 output tokens/,
    ],
  ];
  const model = path.join(dir, "model.gguf");
  fs.writeFileSync(model, "");
  for (const [argv, expected] of cases) {
    const { code, said } = await exitCode(argv.map((a) => (a === "PLACEHOLDER" ? model : a)));
    assert.equal(code, 2, `${argv.join(" ")} → ${code}: ${said}`);
    assert.match(said, expected);
    assert.equal(said.split("\n").length, 1, `one line for ${argv.join(" ")}: ${said}`);
    assert.match(said, /^llamux bench: /);
  }
});

test("a ceiling file of the wrong kind is refused before any request", async () => {
  const file = path.join(dir, "load.json");
  fs.writeFileSync(file, JSON.stringify({ kind: "load", levels: [] }));
  const { code, said } = await exitCode(["--url", "http://127.0.0.1:1", "--model", "m", "--ceiling-json", file]);
  assert.equal(code, 2);
  assert.match(said, /not a 'bench ceiling --json' file/);
});

test("number parsing helpers", () => {
  assert.deepEqual(concurrencyLevels(undefined), [1, 4, 8, 16]);
  assert.deepEqual(concurrencyLevels(" 2, 3 "), [2, 3]);
  assert.equal(positiveInt("x", undefined, 7), 7);
  assert.equal(positiveInt("x", "12", 7), 12);
  assert.throws(() => positiveInt("x", "1e400", 7));
});
