// LangChain JS (`@langchain/openai` ChatOpenAI) against the real server, in
// chat-completions mode and with useResponsesApi: invoke, a conversation that
// sends the returned AIMessage back, stream, a tool loop (forced call, the
// AIMessage and a ToolMessage sent back), and withStructuredOutput with a zod
// schema (its default method and jsonSchema).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";
import { KEYS, startConformanceServer, type ConformanceServer } from "./helpers.js";

let s: ConformanceServer;
before(async () => {
  s = await startConformanceServer();
});
after(async () => {
  await s?.close();
});

const MAX_TOKENS = 200;
const Pet = z.object({ name: z.string().min(1).max(10), kind: z.enum(["cat", "dog"]), friendly: z.boolean() });
const weather = tool(async () => "sunny", { name: "get_weather", description: "Weather in a city", schema: z.object({ city: z.string().max(10) }) });

const MODES = [
  ["chat completions", false],
  ["useResponsesApi", true],
] as const;

function chat(useResponsesApi: boolean, maxTokens = 16): ChatOpenAI {
  return new ChatOpenAI({ model: s.modelId, apiKey: KEYS.app, configuration: { baseURL: s.baseURL }, maxTokens, maxRetries: 0, useResponsesApi });
}

for (const [mode, responses] of MODES) {
  describe(`LangChain ChatOpenAI (${mode})`, () => {
    test("invoke, then the returned AIMessage sent back with the next turn", async () => {
      const model = chat(responses);
      const history: BaseMessage[] = [new HumanMessage("Once upon a time")];
      const first = await model.invoke(history);
      assert.ok(first instanceof AIMessage);
      assert.ok(typeof first.content === "string" ? first.content.length > 0 : first.content.length > 0);
      history.push(first, new HumanMessage("And then?"));
      const second = await model.invoke(history);
      assert.ok(second instanceof AIMessage);
    });

    test("stream: chunks concatenate into the message", async () => {
      const stream = await chat(responses).stream("Once upon a time");
      let chunks = 0;
      let text = "";
      for await (const chunk of stream) {
        chunks++;
        text += chunk.text;
      }
      assert.ok(chunks > 1);
      assert.ok(text.length > 0);
    });

    test("a tool loop: a forced call, then the AIMessage and a ToolMessage sent back", async () => {
      const model = chat(responses, MAX_TOKENS);
      const history: BaseMessage[] = [new HumanMessage("Weather in Paris?")];
      // Named, not "required": in Responses mode LangChain drops a string tool_choice
      // ("required", "auto") from the request (@langchain/openai 1.5.8, chat_models/responses.js).
      // One call: with parallel calls allowed, a model that knows nothing of tools writes calls until the token limit.
      const first = await model.bindTools([weather], { tool_choice: "get_weather", parallel_tool_calls: false }).invoke(history);
      const call = first.tool_calls?.[0];
      assert.ok(call, JSON.stringify(first));
      assert.equal(call.name, "get_weather");
      assert.equal(typeof call.args.city, "string");
      history.push(first, new ToolMessage({ tool_call_id: call.id!, content: "sunny" }));
      const second = await model.bindTools([weather]).invoke(history);
      assert.ok(second instanceof AIMessage);
    });

    test("withStructuredOutput (default method) with a zod schema", async () => {
      const pet = await chat(responses, MAX_TOKENS).withStructuredOutput(Pet, { name: "pet" }).invoke("A pet?");
      Pet.parse(pet);
    });

    test("withStructuredOutput with method jsonSchema", async () => {
      const pet = await chat(responses, MAX_TOKENS).withStructuredOutput(Pet, { name: "pet", method: "jsonSchema" }).invoke("A pet?");
      Pet.parse(pet);
    });
  });
}
