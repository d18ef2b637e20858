// `llamux bench soak` and `llamux bench overload` argument handling: every
// case fails (or prints help) before any request is sent or server started.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { benchMain } from "../../../bench/cli.js";

const messages: string[] = [];
const originalError = console.error;
const originalLog = console.log;
before(() => {
  console.error = (...args: unknown[]) => void messages.push(args.join(" "));
  console.log = (...args: unknown[]) => void messages.push(args.join(" "));
});
after(() => {
  console.error = originalError;
  console.log = originalLog;
});

async function run(argv: string[]): Promise<{ code: number; said: string }> {
  messages.length = 0;
  const code = await benchMain(argv);
  return { code, said: messages.join("\n") };
}

test("--help lists the soak and overload options", async () => {
  for (const cmd of ["soak", "overload"]) {
    const { code, said } = await run([cmd, "--help"]);
    assert.equal(code, 0);
    for (const opt of ["--minutes", "--cancel-fraction", "--cancel-max-tokens", "--serve", "--pid", "--factor", "--rate", "--duration-s", "--unbounded-too"]) {
      assert.ok(said.includes(opt), `help lacks ${opt}`);
    }
  }
});

test("bad arguments give one line and exit 2", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["soak"], /needs --url URL and --model ID, or --serve FILE/],
    [["soak", "--url", "ftp://x", "--model", "m"], /--url must be an http\(s\) URL/],
    [["soak", "--url", "http://h", "--model", "m", "--minutes", "0"], /--minutes must be a positive number/],
    [["soak", "--url", "http://h", "--model", "m", "--cancel-fraction", "1.5"], /--cancel-fraction must be between 0 and 1/],
    [["soak", "--url", "http://h", "--model", "m", "--pid", "x"], /--pid must be a positive integer/],
    [["soak", "--url", "http://h", "--model", "m", "--", "--slots", "2"], /server options after '--' need --serve/],
    [["soak", "--serve", "/no/such/model.gguf"], /--serve: no such file/],
    [["soak", "--serve", "/no/such/model.gguf", "--url", "http://h"], /--url cannot be combined with --serve/],
    [["overload", "--url", "http://h", "--model", "m", "--factor=-2"], /--factor must be a positive number/],
    [["overload", "--url", "http://h", "--model", "m", "--unbounded-too"], /--unbounded-too needs --serve/],
    [["overload", "--url", "http://h", "--model", "m", "--endpoint", "x"], /--endpoint must be chat or completions/],
    [["overload", "--url", "http://h", "--model", "m", "--nope"], /Unknown option '--nope'/],
  ];
  for (const [argv, pattern] of cases) {
    const { code, said } = await run(argv);
    assert.equal(code, 2, `${argv.join(" ")}: ${said}`);
    assert.match(said, pattern, argv.join(" "));
    assert.equal(said.trim().split("\n").length, 1, `${argv.join(" ")}: one line`);
  }
});
