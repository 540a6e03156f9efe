"""Tool calls in the formats real open models write, fed whole and in arbitrary pieces."""

from __future__ import annotations

import pytest

from outcrop.engines.toolcalls import CallOut, TextOut, ToolCallParser, parse_json_calls

CASES = [
    # (model output, expected [(kind, value)])
    ("Hello there.", [("text", "Hello there.")]),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     [("call", ("get_weather", {"city": "Paris"}))]),
    ('Let me check.<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>',
     [("text", "Let me check."), ("call", ("a", {})), ("call", ("b", {"x": 1}))]),
    ('{"name": "get_weather", "parameters": {"city": "Oslo"}}', [("call", ("get_weather", {"city": "Oslo"}))]),
    ('<|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"q": "x"}}',
     [("call", ("a", {})), ("call", ("b", {"q": "x"}))]),
    ('{"name": "a", "arguments": "{\\"k\\": 2}"}', [("call", ("a", {"k": 2}))]),
    ('{"city": "Paris"}', [("text", '{"city": "Paris"}')]),  # JSON, but not a call
    ("<tool_call>not json</tool_call> ok", [("text", "<tool_call>not json</tool_call>"), ("text", " ok")]),
    ('<tool_call>{"name": "a", "arguments": {"x": 1', [("text", '<tool_call>{"name": "a", "arguments": {"x": 1')]),
    ("a < b and <tool", [("text", "a < b and <tool")]),
]  # fmt: skip


def _flatten(outs: list[TextOut | CallOut]) -> list[tuple[str, object]]:
    merged: list[tuple[str, object]] = []
    for o in outs:
        if isinstance(o, CallOut):
            merged.append(("call", (o.name, dict(o.arguments))))
        elif merged and merged[-1][0] == "text" and not str(merged[-1][1]).endswith("</tool_call>"):
            merged[-1] = ("text", str(merged[-1][1]) + o.text)
        else:
            merged.append(("text", o.text))
    return merged


@pytest.mark.parametrize(("text", "expected"), CASES)
@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_parser(text: str, expected: list[tuple[str, object]], piece: int) -> None:
    parser = ToolCallParser({"get_weather", "a", "b"})
    outs: list[TextOut | CallOut] = []
    for i in range(0, len(text), piece):
        outs += parser.feed(text[i : i + piece])
    outs += parser.finish()
    assert _flatten(outs) == expected


def test_unknown_tool_names_stay_text() -> None:
    assert parse_json_calls('{"name": "rm_rf", "arguments": {}}', {"get_weather"}) is None


def test_text_is_not_held_back() -> None:
    parser = ToolCallParser({"a"})
    assert parser.feed("Hello") == [TextOut("Hello")]
    assert parser.feed(" wor<tool") == [TextOut(" wor")]  # only the possible tag start waits
