// The OpenAI Agents SDK (`@openai/agents`) against the real server: an Agent
// with a function tool and a zod outputType, run through run(), on the
// Responses model and on the chat-completions model. The first turn forces the
// tool (modelSettings.toolChoice "required"); the SDK then runs it, resets the
// tool choice, and sends the call and its result back with the output type's
// JSON schema, which the server's grammar enforces: the final output parses.
// Tracing is disabled: nothing leaves the machine.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, run, setDefaultOpenAIClient, setTracingDisabled, tool, type Model } from "@openai/agents";
import OpenAI from "openai";
import { z } from "zod";
import { KEYS, startConformanceServer, type ConformanceServer } from "./helpers.js";

let s: ConformanceServer;
let client: OpenAI;
before(async () => {
  setTracingDisabled(true);
  s = await startConformanceServer();
  client = new OpenAI({ baseURL: s.baseURL, apiKey: KEYS.app, maxRetries: 0, timeout: 60_000 });
  setDefaultOpenAIClient(client);
});
after(async () => {
  await s?.close();
});

const Forecast = z.object({ city: z.string().min(1).max(10), sunny: z.boolean() });

function weatherAgent(model: Model): Agent<unknown, typeof Forecast> {
  let calls = 0;
  const getWeather = tool({
    name: "get_weather",
    description: "Weather in a city",
    parameters: z.object({ city: z.string().max(10) }),
    execute: async ({ city }) => {
      calls++;
      return `${city}: sunny (call ${calls})`;
    },
  });
  return new Agent({
    name: "forecaster",
    instructions: "Answer with the forecast.",
    model,
    tools: [getWeather],
    outputType: Forecast,
    // One call: with parallel calls allowed, a model that knows nothing of tools writes calls until the token limit.
    modelSettings: { toolChoice: "required", parallelToolCalls: false, maxTokens: 200 },
  });
}

describe("OpenAI Agents SDK", () => {
  for (const [name, model] of [
    ["Responses model", () => new OpenAIResponsesModel(client, s.modelId)],
    ["chat completions model", () => new OpenAIChatCompletionsModel(client, s.modelId)],
  ] as const) {
    test(`${name}: run() calls the tool, then ends with the outputType's value`, async () => {
      const result = await run(weatherAgent(model()), "Weather in Paris?", { maxTurns: 4 });
      const value = Forecast.parse(result.finalOutput);
      assert.equal(typeof value.sunny, "boolean");
      const kinds = result.newItems.map((item) => item.type);
      assert.ok(kinds.includes("tool_call_item"), kinds.join(","));
      assert.ok(kinds.includes("tool_call_output_item"), kinds.join(","));
      assert.equal(kinds.at(-1), "message_output_item");
    });
  }

  test("Responses model: a second run() continues from the first's history (its items sent back as input)", async () => {
    const agent = weatherAgent(new OpenAIResponsesModel(client, s.modelId));
    const first = await run(agent, "Weather in Paris?", { maxTurns: 4 });
    const second = await run(agent, [...first.history, { role: "user", content: "And Rome?" }], { maxTurns: 4 });
    Forecast.parse(second.finalOutput);
  });
});
