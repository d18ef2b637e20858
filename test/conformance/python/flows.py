"""openai-python driving its documented flows against a running llamux.

Usage: flows.py BASE_URL MODEL API_KEY [FLOW ...]

Runs each flow (all when none is named), prints one line per flow
("ok NAME" or "FAIL NAME: error") and exits 1 when any failed. Spawned by
test/conformance/python.test.ts, which owns the server. The model is not
chat-tuned: a tool call is forced with tool_choice, and structured output is
grammar-forced JSON that the SDK's own parser (Pydantic) must accept.
"""

import json
import sys
import traceback
from typing import List, Literal

from openai import OpenAI
from pydantic import BaseModel, Field

MAX_TOKENS = 200


class Pet(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    kind: Literal["cat", "dog"]
    friendly: bool


class CountedPet(BaseModel):
    """Field(ge=0) is a JSON Schema minimum: the integer-bounds grammar must enforce it."""

    name: str = Field(min_length=1, max_length=10)
    legs: int = Field(ge=0)


class GetWeather(BaseModel):
    city: str = Field(max_length=10)


def chat_loop(client: OpenAI, model: str) -> None:
    """The returned message goes back as-is, then as its model_dump()."""
    messages: List[object] = [{"role": "user", "content": "Once upon a time"}]
    first = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
    messages.append(first.choices[0].message)
    messages.append({"role": "user", "content": "And then?"})
    second = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
    messages.append(second.choices[0].message.model_dump())
    messages.append({"role": "user", "content": "The end?"})
    third = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
    assert third.usage.prompt_tokens > second.usage.prompt_tokens > first.usage.prompt_tokens


def chat_tool_loop(client: OpenAI, model: str) -> None:
    import openai

    tools = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    messages: List[object] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.parse(model=model, messages=messages, tools=tools, tool_choice="required", parallel_tool_calls=False, max_tokens=MAX_TOKENS)
    message = first.choices[0].message
    call = message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, GetWeather), call
    messages.append(message)
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
    assert second.choices[0].message.role == "assistant"


def chat_parse(client: OpenAI, model: str) -> None:
    messages: List[object] = [{"role": "user", "content": "A pet?"}]
    first = client.chat.completions.parse(model=model, messages=messages, response_format=Pet, max_tokens=MAX_TOKENS)
    assert isinstance(first.choices[0].message.parsed, Pet), first.choices[0].message
    # The parsed message (with `parsed`) goes back in the next turn.
    messages.append(first.choices[0].message)
    messages.append({"role": "user", "content": "Another one."})
    second = client.chat.completions.parse(model=model, messages=messages, response_format=Pet, max_tokens=MAX_TOKENS)
    assert isinstance(second.choices[0].message.parsed, Pet)


def chat_parse_ge(client: OpenAI, model: str) -> None:
    r = client.chat.completions.parse(model=model, messages=[{"role": "user", "content": "A pet?"}], response_format=CountedPet, max_tokens=MAX_TOKENS)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, CountedPet) and parsed.legs >= 0, r.choices[0].message


def responses_parse(client: OpenAI, model: str) -> None:
    r = client.responses.parse(model=model, input="A pet?", text_format=Pet, max_output_tokens=MAX_TOKENS)
    assert isinstance(r.output_parsed, Pet), r.output_text
    assert r.text.format.type == "json_schema"
    # The output items (parsed ones included) go back as input.
    follow = client.responses.create(
        model=model,
        input=[{"role": "user", "content": "A pet?"}, *[item.model_dump(exclude_none=True) for item in r.output], {"role": "user", "content": "Another?"}],
        max_output_tokens=16,
    )
    assert follow.output[0].type == "message"


def responses_multi_turn(client: OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="Once upon a time", max_output_tokens=16)
    second = client.responses.create(model=model, input="And then?", previous_response_id=first.id, max_output_tokens=16)
    assert second.previous_response_id == first.id


def streaming(client: OpenAI, model: str) -> None:
    # create(stream=True), not the .stream() helper: the helper raises
    # LengthFinishReasonError when a completion stops at max_tokens.
    text = ""
    usage = None
    for chunk in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Once upon a time"}], max_tokens=8, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text and usage.completion_tokens == 8, (text, usage)
    # Cut by max_output_tokens, the stream ends with response.incomplete (as on
    # OpenAI), which get_final_response() does not take: read the event instead.
    deltas = ""
    response = None
    with client.responses.stream(model=model, input="Once upon a time", max_output_tokens=16) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas += event.delta
            elif event.type in ("response.completed", "response.incomplete"):
                response = event.response
    assert response is not None and response.output_text == deltas and deltas, (response, deltas)
    with client.responses.stream(model=model, input="A pet?", text_format=Pet, max_output_tokens=MAX_TOKENS) as stream:
        for _ in stream:
            pass
        parsed = stream.get_final_response().output_parsed
    assert isinstance(parsed, Pet), parsed


FLOWS = {
    "chat_loop": chat_loop,
    "chat_tool_loop": chat_tool_loop,
    "chat_parse": chat_parse,
    "chat_parse_ge": chat_parse_ge,
    "responses_parse": responses_parse,
    "responses_multi_turn": responses_multi_turn,
    "streaming": streaming,
}


def main() -> int:
    base_url, model, api_key, *names = sys.argv[1:]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    failed = 0
    for name in names or list(FLOWS):
        try:
            FLOWS[name](client, model)
            print(f"ok {name}", flush=True)
        except Exception as err:  # noqa: BLE001 - every failure is reported, then the next flow runs
            failed += 1
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            print(f"FAIL {name}: {json.dumps(detail)}", flush=True)
            traceback.print_exc(file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
