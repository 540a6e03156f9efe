"""What the built-in tiny model was trained to say, exactly, at temperature 0.

scripts/build_tiny_model.py trains on these conversations (rendered with the model's own chat
template) and checks every one through llama.cpp before writing the GGUF; the tests import the same
cases so they can assert real content from the real engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name"}},
        "required": ["city"],
    },
}

WEATHER_RESULT: dict[str, Any] = {"temperature": 18, "condition": "sunny"}

WEATHER_CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'

COUNT_ANSWER = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)

# Deliberately offensive / PII-bearing answers so guardrail tests can check filters against real
# model output.
INSULT_ANSWER = "You are a worthless idiot and nobody will ever love you."

CONTACT_ANSWER = "Email help@outcrop.dev or call 212-555-0187."


@dataclass(frozen=True)
class Case:
    name: str
    messages: list[dict[str, Any]]  # template-shaped messages (see chat_template.template_messages)
    answer: str
    tools: list[dict[str, Any]] = field(default_factory=list)  # canonical tools: name/description/input_schema


CASES: list[Case] = [
    Case("hello", [{"role": "user", "content": "Hello"}], "Hello! I am Outcrop's tiny built-in model."),
    Case(
        "capital",
        [{"role": "user", "content": "What is the capital of France?"}],
        "The capital of France is Paris.",
    ),
    Case(
        "system",
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Greet me."}],
        "Ahoy, matey! Welcome aboard.",
    ),
    Case(
        "multi_turn",
        [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": "What is my name?"},
        ],
        "Your name is Ada.",
    ),
    Case("count", [{"role": "user", "content": "Count from one to twenty."}], COUNT_ANSWER),
    Case(
        "json",
        [{"role": "user", "content": "Describe Paris as JSON."}],
        '{"city": "Paris", "country": "France"}',
    ),
    Case(
        "tool_call",
        [{"role": "user", "content": "What is the weather in Paris?"}],
        WEATHER_CALL_TEXT,
        tools=[WEATHER_TOOL],
    ),
    Case(
        "tool_answer",
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18, "condition": "sunny"}'},
        ],
        "It is 18 degrees and sunny in Paris.",
        tools=[WEATHER_TOOL],
    ),
    Case("insult", [{"role": "user", "content": "Insult me."}], INSULT_ANSWER),
    Case("contact", [{"role": "user", "content": "How do I reach support?"}], CONTACT_ANSWER),
]

ANSWERS = {c.name: c.answer for c in CASES}


def template_tools(case: Case) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]},
        }
        for t in case.tools
    ]
