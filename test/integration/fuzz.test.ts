// Hostile input against the real server: random JSON, mutated valid payloads,
// raw bytes and random paths. Whatever arrives, the answer is a 2xx or a 4xx in
// OpenAI's error shape, never a 5xx, and the server (and its engine worker)
// still serves a normal request afterwards.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { MODELS, startTestServer, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256"]);
});
after(async () => {
  await t?.close();
});

const RUNS = 150;
// A fixed seed keeps CI reproducible; FUZZ_SEED explores other corners locally.
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20_240_601;
const params = (numRuns = RUNS) => ({ numRuns, seed: SEED, endOnFailure: true });

const ENDPOINTS = ["/v1/chat/completions", "/v1/completions"] as const;
type Endpoint = (typeof ENDPOINTS)[number];

interface Reply {
  status: number;
  contentType: string;
  text: string;
}

/** Sends raw bytes and reads the whole answer (an SSE stream too), so no connection is left open. */
async function send(
  method: string,
  path: string,
  body?: string | Uint8Array,
  headers: Record<string, string> = { "content-type": "application/json" },
): Promise<Reply> {
  const res = await fetch(`${t.url}${path}`, { method, headers, body, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  return { status: res.status, contentType: res.headers.get("content-type") ?? "", text };
}

/** The invariant of every answer: no 5xx, and every error in OpenAI's shape. */
function assertSane(r: Reply, what: string): void {
  assert.ok(r.status < 500, `${what}: status ${r.status}: ${r.text.slice(0, 300)}`);
  if (r.status < 400) return;
  assert.match(r.contentType, /application\/json/, `${what}: error content-type ${r.contentType}`);
  const body = JSON.parse(r.text) as { error?: Record<string, unknown> };
  const e = body.error;
  assert.ok(e && typeof e === "object", `${what}: no error object in ${r.text.slice(0, 300)}`);
  assert.equal(typeof e.message, "string", what);
  assert.ok((e.message as string).length > 0, `${what}: empty message`);
  assert.equal(typeof e.type, "string", what);
  assert.ok(e.param === null || typeof e.param === "string", `${what}: param ${String(e.param)}`);
  assert.ok(e.code === null || typeof e.code === "string", `${what}: code ${String(e.code)}`);
}

function assertError(r: Reply, status: number, code: string, param?: string | null): { message: string; param: string | null } {
  assertSane(r, code);
  assert.equal(r.status, status, r.text.slice(0, 300));
  const e = (JSON.parse(r.text) as { error: { message: string; param: string | null; code: string } }).error;
  assert.equal(e.code, code);
  if (param !== undefined) assert.equal(e.param, param);
  return e;
}

const post = (path: string, body: string | Uint8Array, headers?: Record<string, string>) => send("POST", path, body, headers);

function validPayload(endpoint: Endpoint): Record<string, unknown> {
  return endpoint === "/v1/chat/completions"
    ? { model: t.modelId, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 2, temperature: 0.5 }
    : { model: t.modelId, prompt: "Once upon a time", max_tokens: 2, temperature: 0.5 };
}

/** Keeps a mutated request short: a valid one generates at most 4 tokens, and streams rarely. */
function bounded(body: Record<string, unknown>, allowStream: boolean): Record<string, unknown> {
  const out = { ...body };
  for (const k of ["max_tokens", "max_completion_tokens"] as const) {
    if (typeof out[k] === "number" && Number.isSafeInteger(out[k]) && (out[k] as number) > 4) out[k] = 4;
  }
  if (!("max_tokens" in out) && !("max_completion_tokens" in out)) out.max_tokens = 2;
  if (!allowStream && "stream" in out && out.stream !== false) delete out.stream;
  return out;
}

const jsonValue = fc.jsonValue({ maxDepth: 4 });
const fieldNames = (endpoint: Endpoint) =>
  fc.constantFrom(
    "model",
    ...(endpoint === "/v1/chat/completions"
      ? ["messages", "max_completion_tokens", "n", "response_format", "tools", "logprobs"]
      : ["prompt", "echo", "suffix", "best_of", "logprobs"]),
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "stream_options",
    "priority",
    "user",
    "metadata",
    "ignore_eos",
  );

/** Numbers as raw JSON text: what JSON.stringify can never produce. */
const rawNumber = fc.constantFrom(
  "1e400",
  "-1e400",
  "-0",
  "9007199254740993",
  "9007199254740992",
  "4294967296",
  "-2147483649",
  "1e-400",
  "0.5e1",
  "123456789012345678901234567890",
  "1E2",
  "-1",
);

type Mutation = { kind: string; apply: (body: Record<string, unknown>) => string };

function mutation(endpoint: Endpoint): fc.Arbitrary<Mutation> {
  const field = fieldNames(endpoint);
  return fc.oneof(
    field.map((f) => ({ kind: `drop ${f}`, apply: (b: Record<string, unknown>) => JSON.stringify((({ [f]: _, ...rest }) => rest)(b)) })),
    fc
      .tuple(field, jsonValue)
      .map(([f, v]) => ({ kind: `set ${f}=${JSON.stringify(v)}`, apply: (b: Record<string, unknown>) => JSON.stringify({ ...b, [f]: v }) })),
    fc
      .tuple(fc.string({ minLength: 1, maxLength: 12 }), jsonValue)
      .map(([f, v]) => ({ kind: `add ${f}`, apply: (b: Record<string, unknown>) => JSON.stringify({ ...b, [f]: v }) })),
    fc.tuple(field, rawNumber).map(([f, n]) => ({
      kind: `raw ${f}=${n}`,
      // Appended as text: the last duplicate key wins in JSON.parse.
      apply: (b: Record<string, unknown>) => `${JSON.stringify(b).slice(0, -1)},${JSON.stringify(f)}:${n}}`,
    })),
    fc.tuple(field, fc.integer({ min: 1, max: 200 })).map(([f, depth]) => ({
      kind: `nest ${f} ${depth}`,
      apply: (b: Record<string, unknown>) => `${JSON.stringify(b).slice(0, -1)},${JSON.stringify(f)}:${"[".repeat(depth)}1${"]".repeat(depth)}}`,
    })),
    fc
      .tuple(field, fc.integer({ min: 1_000, max: 200_000 }))
      .map(([f, n]) => ({ kind: `long ${f} ${n}`, apply: (b: Record<string, unknown>) => JSON.stringify({ ...b, [f]: "a".repeat(n) }) })),
    fc.string({ maxLength: 40 }).map((s) => ({
      kind: `content ${JSON.stringify(s)}`,
      apply: (b: Record<string, unknown>) => JSON.stringify("messages" in b ? { ...b, messages: [{ role: "user", content: s }] } : { ...b, prompt: s }),
    })),
    fc.tuple(fc.constantFrom("text", "image_url", "input_audio", "file", "refusal", "", "TEXT"), jsonValue).map(([type, extra]) => ({
      kind: `part ${type}`,
      apply: (b: Record<string, unknown>) =>
        JSON.stringify("messages" in b ? { ...b, messages: [{ role: "user", content: [{ type, text: extra }] }] } : { ...b, prompt: [extra] }),
    })),
  );
}

/** Random bytes spliced into a valid body: invalid UTF-8, control characters, truncation. */
const byteMutation = fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.nat(), fc.boolean());

function splice(text: string, bytes: Uint8Array, at: number, truncate: boolean): Uint8Array {
  const raw = Buffer.from(text);
  const i = at % (raw.length + 1);
  return Buffer.concat([raw.subarray(0, i), Buffer.from(bytes), truncate ? Buffer.alloc(0) : raw.subarray(i)]);
}

const contentTypes = fc.constantFrom(
  "application/json",
  "application/json; charset=utf-8",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/json; charset=utf-16",
  "application/json; charset=latin1",
  "application/json; charset=nope",
  "",
);

async function assertAlive(): Promise<void> {
  const r = await t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0]!.finish_reason === "length" || r.choices[0]!.finish_reason === "stop", true);
}

describe("fuzz", () => {
  test("random JSON bodies are refused cleanly", async () => {
    for (const endpoint of ENDPOINTS) {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (v) => {
          assertSane(await post(endpoint, JSON.stringify(v) ?? "null"), `${endpoint} ${JSON.stringify(v)?.slice(0, 200)}`);
        }),
        params(),
      );
    }
  });

  test("random objects with valid-looking keys are refused cleanly", async () => {
    for (const endpoint of ENDPOINTS) {
      const value = fc.dictionary(fieldNames(endpoint), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 });
      await fc.assert(
        fc.asyncProperty(value, async (v) => {
          const body = bounded(v, false);
          assertSane(await post(endpoint, JSON.stringify(body)), `${endpoint} ${JSON.stringify(body).slice(0, 200)}`);
        }),
        params(),
      );
    }
  });

  test("mutations of valid payloads never cause a 5xx", async () => {
    for (const endpoint of ENDPOINTS) {
      await fc.assert(
        fc.asyncProperty(mutation(endpoint), fc.integer({ min: 0, max: 49 }), async (m, dice) => {
          const text = m.apply(bounded(validPayload(endpoint), dice === 0));
          // A mutation may have set a big max_tokens or stream: cap them again. Otherwise the
          // raw text goes as is (re-serialising would turn 1e400 into null).
          let body = text;
          try {
            const parsed = JSON.parse(text) as Record<string, unknown>;
            const capped = bounded(parsed, dice === 0);
            if (["max_tokens", "max_completion_tokens", "stream"].some((k) => capped[k] !== parsed[k])) body = JSON.stringify(capped);
          } catch {
            // malformed text is sent as is
          }
          assertSane(await post(endpoint, body), `${endpoint} ${m.kind}`);
        }),
        params(),
      );
    }
  });

  test("raw bytes and content types never cause a 5xx", async () => {
    for (const endpoint of ENDPOINTS) {
      await fc.assert(
        fc.asyncProperty(byteMutation, contentTypes, async ([bytes, at, truncate], contentType) => {
          const raw = splice(JSON.stringify(validPayload(endpoint)), bytes, at, truncate);
          const headers: Record<string, string> = contentType ? { "content-type": contentType } : {};
          assertSane(await post(endpoint, raw, headers), `${endpoint} ${Buffer.from(bytes).toString("hex")}@${at} ${contentType}`);
        }),
        params(),
      );
    }
  });

  test("random model ids and paths are a 404 or 400, never a 5xx", async () => {
    // Percent-encodes the UTF-8 bytes (encodeURIComponent throws on a lone surrogate).
    const pct = (s: string) =>
      [...Buffer.from(s)]
        .map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, "0")}`))
        .join("");
    const segment = fc.oneof(
      fc.string({ maxLength: 60 }).map(pct),
      fc.string({ unit: "binary", maxLength: 30 }).map(pct),
      fc.constantFrom("%", "%zz", "%E0%A4%A", "%00", "..", ".", "%2e%2e", "%2F", "a%2Fb", "%C0%AF", "%FF", "~", "*", ";", "(", "..%2F..%2Fetc%2Fpasswd"),
      // Node refuses request heads over 16 KiB itself (a bare 431): stay under it.
      fc.integer({ min: 1, max: 3000 }).map((n) => "x".repeat(n)),
    );
    await fc.assert(
      fc.asyncProperty(segment, fc.array(segment, { maxLength: 3 }), async (id, rest) => {
        assertSane(await send("GET", `/v1/models/${id}`), `GET /v1/models/${id.slice(0, 100)}`);
        const path = ["/v1", ...rest].join("/");
        assertSane(await send("GET", path), `GET ${path.slice(0, 100)}`);
        assertSane(await post(`${path}`, "{}"), `POST ${path.slice(0, 100)}`);
      }),
      params(),
    );
  });

  test("the server and its engine worker are alive after the fuzzing", async () => {
    await assertAlive();
  });
});

describe("hostile examples", () => {
  const chatPath = "/v1/chat/completions";
  const msgs = () => JSON.stringify([{ role: "user", content: "Hi" }]);
  const withField = (field: string, rawValue: string) =>
    `{"model":${JSON.stringify(t.modelId)},"messages":${msgs()},"max_tokens":2,${JSON.stringify(field)}:${rawValue}}`;

  test("JSON nested 10 000 levels deep is a 400, wherever it sits", async () => {
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
    const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
    assertError(await post(chatPath, deep(10_000)), 400, "invalid_body", null);
    assertError(await post(chatPath, deepObject(10_000)), 400, "invalid_body", null);
    // An ignored field, and one that is only checked for null: both must still refuse the depth.
    assertError(await post(chatPath, withField("prompt_cache_options", deepObject(10_000))), 400, "invalid_body", null);
    assertError(await post(chatPath, withField("tools", deep(100_000))), 400, "invalid_body", null);
    assertError(await post("/v1/completions", `{"model":${JSON.stringify(t.modelId)},"prompt":${deep(10_000)}}`), 400, "invalid_body", null);
  });

  test("a 100 000-element messages array is a 400 naming messages", async () => {
    const messages = Array.from({ length: 100_000 }, () => ({ role: "user", content: "x" }));
    const e = assertError(await post(chatPath, JSON.stringify({ model: t.modelId, messages })), 400, "invalid_value", "messages");
    assert.match(e.message, /at most 2048 messages/);
  });

  test("invalid UTF-8 in the body is a 400, never a 5xx, and never echoes the bytes back", async () => {
    const body = Buffer.concat([
      Buffer.from(`{"model":${JSON.stringify(t.modelId)},"messages":[{"role":"user","content":"`),
      Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]),
      Buffer.from('"}],"max_tokens":2}'),
    ]);
    const r = await post(chatPath, body);
    assertSane(r, "invalid utf-8");
    // Refused, not decoded to U+FFFD: the model must never run on text the client did not send.
    assertError(r, 400, "invalid_json", null);
    const asKey = Buffer.concat([Buffer.from('{"'), Buffer.from([0xc0, 0xaf]), Buffer.from('":1}')]);
    assertSane(await post(chatPath, asKey), "invalid utf-8 key");
  });

  test("NaN and Infinity literals are invalid JSON", async () => {
    for (const literal of ["NaN", "Infinity", "-Infinity", "undefined", "0x10", "+1", ".5", "01"]) {
      assertError(await post(chatPath, withField("temperature", literal)), 400, "invalid_json", null);
    }
  });

  test("1e400 for temperature is a 400 naming temperature", async () => {
    assertError(await post(chatPath, withField("temperature", "1e400")), 400, "invalid_type", "temperature");
    assertError(await post(chatPath, withField("temperature", "-1e400")), 400, "invalid_type", "temperature");
    // -0 and 1e-400 (which underflows to 0) are valid temperatures.
    assertSane(await post(chatPath, withField("temperature", "-0")), "-0");
    assert.equal((await post(chatPath, withField("temperature", "1e-400"))).status, 200);
  });

  test("max_tokens = 2^53 is a 400 naming max_tokens", async () => {
    for (const raw of ["9007199254740992", "9007199254740993", "1e300"]) {
      assertError(await post(chatPath, `{"model":${JSON.stringify(t.modelId)},"messages":${msgs()},"max_tokens":${raw}}`), 400, "invalid_value", "max_tokens");
      assertError(await post("/v1/completions", `{"model":${JSON.stringify(t.modelId)},"prompt":"x","max_tokens":${raw}}`), 400, "invalid_value", "max_tokens");
    }
    // The largest safe integer is valid JSON and a valid integer: refused for the context, not as a crash.
    assertError(await post(chatPath, withField("max_completion_tokens", String(Number.MAX_SAFE_INTEGER))), 400, "context_length_exceeded");
  });

  test("unknown content part types are refused by name; a malformed text part names its field", async () => {
    for (const part of [{ type: "hologram" }, { type: "" }, { type: "image_url", image_url: { url: "data:," } }, { type: "input_audio" }]) {
      const r = await post(chatPath, JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: [part] }] }));
      assertError(r, 400, "unsupported_parameter", "messages[0].content[0].type");
    }
    const r1 = await post(
      chatPath,
      JSON.stringify({
        model: t.modelId,
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "a" },
              { type: "text", text: 5 },
            ],
          },
        ],
      }),
    );
    assertError(r1, 400, "invalid_type", "messages[0].content[1].text");
    const r2 = await post(
      chatPath,
      JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: [{ type: "text", text: "a", cache_control: {} }] }] }),
    );
    // Unknown keys inside a part are ignored, as OpenAI does (a client's cache hints, a returned part's annotations).
    assert.equal(r2.status, 200);
    const r3 = await post(chatPath, JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: [{ type: "text" }] }] }));
    assertError(r3, 400, "missing_required_parameter", "messages[0].content[0].text");
    assertSane(await post(chatPath, JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: [null, 1, "x"] }] })), "non-object parts");
  });

  test("an empty body with content-type json is a 400", async () => {
    for (const endpoint of ENDPOINTS) {
      for (const empty of ["", " ", "\n"]) {
        const r = await post(endpoint, empty);
        assertSane(r, `empty ${JSON.stringify(empty)}`);
        assert.equal(r.status, 400);
      }
    }
    // body-parser's strict mode refuses a top-level primitive as invalid JSON.
    assertError(await post(chatPath, "null"), 400, "invalid_json", null);
    assertError(await post(chatPath, "[]"), 400, "invalid_body", null);
  });

  test("__proto__ keys and out-of-range token ids are refused, not dropped", async () => {
    assertError(await post(chatPath, withField("logit_bias", '{"__proto__":50}')), 400, "invalid_value", "logit_bias.__proto__");
    assertError(await post(chatPath, withField("metadata", '{"__proto__":{"x":"y"}}')), 400, "invalid_value", "metadata.__proto__");
    // node-llama-cpp passes bias keys as a Uint32Array: 2^32 would wrap to token 0.
    assertError(await post(chatPath, withField("logit_bias", '{"4294967296":-100}')), 400, "invalid_value", "logit_bias.4294967296");
    assertError(await post(chatPath, withField("top_k", "4294967296")), 400, "invalid_value", "top_k");
  });

  test("long strings in ignored fields are bounded", async () => {
    assertError(await post(chatPath, withField("user", JSON.stringify("u".repeat(10_000)))), 400, "invalid_value", "user");
    assertError(
      await post(chatPath, withField("metadata", JSON.stringify(Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]))))),
      400,
      "invalid_value",
      "metadata",
    );
  });

  test("after the hostile examples a normal chat request still succeeds", async () => {
    await assertAlive();
  });
});
