// engine/grammar.ts: the GBNF llamux samples with, compiled by llama.cpp itself
// (no model needed) and probed with the grammar's own full-match test.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { getLlama, LlamaLogLevel, type Llama, type LlamaGrammar } from "node-llama-cpp";
import { finishJsonGrammar, gbnfLiteral, grammarFor } from "../../../engine/grammar.js";
import type { GrammarSpec } from "../../../engine/protocol.js";

let llama: Llama;
before(async () => {
  llama = await getLlama({ build: "never", gpu: false, logLevel: LlamaLogLevel.error, progressLogs: false });
});
after(async () => {
  await llama?.dispose();
});

/** Whether the whole of `text` is a complete sentence of the grammar (llama.cpp's own matcher). */
const accepts = (g: LlamaGrammar, text: string): boolean => (g as unknown as { _testText(t: string): boolean })._testText(text);

describe("JSON schema grammars", () => {
  const spec: GrammarSpec = {
    kind: "json_schema",
    schema: {
      type: "object",
      properties: { i: { type: "integer" }, n: { type: "number" }, s: { type: "string", minLength: 1, maxLength: 3 } },
      additionalProperties: false,
    },
  };

  test("a valid value is accepted and is complete at its closing brace (no trailing newlines)", () => {
    const g = grammarFor(llama, spec);
    assert.equal(accepts(g, '{"i": 5, "n": -1.5e3, "s": "ab"}'), true);
    assert.equal(accepts(g, '{"i": 5, "n": 1.5, "s": "ab"}\n\n\n\n'), false, "node-llama-cpp's stop marker is gone");
    assert.equal(accepts(g, '{"i": 5, "n": 1.5'), false);
  });

  test("integers have no exponent, number exponents stay finite, strings count like JSON Schema", () => {
    const g = grammarFor(llama, spec);
    assert.equal(accepts(g, '{"i": 5e-1, "n": 1, "s": "a"}'), false, "5e-1 is 0.5");
    assert.equal(accepts(g, '{"i": 5, "n": 1e999, "s": "a"}'), false, "1e999 parses to Infinity");
    assert.equal(accepts(g, '{"i": 5, "n": 1e99, "s": "a"}'), true);
    assert.equal(accepts(g, '{"i": 5, "n": 1, "s": "\\ud83d"}'), false, "a lone surrogate escape");
    assert.equal(accepts(g, '{"i": 5, "n": 1, "s": "\\u00e9\\n"}'), true);
    assert.equal(accepts(g, '{"i": 5, "n": 1, "s": ""}'), false, "minLength");
    assert.equal(accepts(g, '{"i": 5, "n": 1, "s": "abcd"}'), false, "maxLength");
  });

  test("the same spec compiles once", () => {
    assert.equal(grammarFor(llama, spec), grammarFor(llama, structuredClone(spec)));
  });

  test("a wrapped value repeats between its literals when asked", () => {
    const wrapped = (repeat: boolean) =>
      grammarFor(llama, {
        kind: "json_schema",
        schema: { type: "object", properties: { name: { const: "f" } } },
        wrap: { prefix: "<tool_call>\n", suffix: "\n</tool_call>", separator: "\n", repeat },
      });
    const one = '<tool_call>\n{"name": "f"}\n</tool_call>';
    assert.equal(accepts(wrapped(false), one), true);
    assert.equal(accepts(wrapped(false), `${one}\n${one}`), false);
    assert.equal(accepts(wrapped(true), `${one}\n${one}`), true);
    assert.equal(accepts(wrapped(true), '{"name": "f"}'), false);
  });

  test("json_object: any object, nothing else", () => {
    const g = grammarFor(llama, { kind: "json" });
    assert.equal(accepts(g, '{"a": [1, {"b": null}], "c": "d"}'), true);
    assert.equal(accepts(g, "{}"), true);
    assert.equal(accepts(g, "[1]"), false);
    assert.equal(accepts(g, '"x"'), false);
  });
});

describe("finishJsonGrammar", () => {
  test("fails loudly when node-llama-cpp's generated text is not what it rewrites", () => {
    assert.throws(() => finishJsonGrammar('root ::= "{" "}"'), /root changed/);
    assert.throws(() => finishJsonGrammar('root ::= "{" "}" "\\n\\n\\n\\n" [\\n]*\ninteger-number-rule ::= [0-9]+'), /integer-number-rule changed/);
    assert.throws(() => finishJsonGrammar("x ::= y"), /no root/);
  });

  test("gbnfLiteral escapes quotes, backslashes and control characters", () => {
    assert.equal(gbnfLiteral('a"b\\c\n'), '"a\\"b\\\\c\\x0a"');
  });
});
