"""Canonical conversations rendered through chat templates, ours and real models' kinds."""

from __future__ import annotations

import pytest

from outcrop import errors
from outcrop.conversation import ChatRequest, Json, Message, Text, Tool, ToolResult, ToolUse
from outcrop.engines import chat_template
from outcrop.engines.chat_template import CHATML_TOOLS_TEMPLATE, render, template_messages
from outcrop.models.tiny_script import CASES, template_tools


def test_template_messages_shapes() -> None:
    request = ChatRequest(
        model="m",
        system="sys",
        messages=(
            Message("user", (Text("hi"),)),
            Message("assistant", (Text("calling"), ToolUse("t1", "f", {"a": 1}))),
            Message("user", (ToolResult("t1", (Json({"r": 2}),)), Text("thanks"))),
        ),
    )
    assert template_messages(request) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "calling",
         "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "t1", "content": '{"r": 2}'},
        {"role": "user", "content": "thanks"},
    ]  # fmt: skip


def test_builtin_cases_render_like_training() -> None:
    # The tool case as the server builds it must render to the same text the model was trained on.
    case = next(c for c in CASES if c.name == "tool_answer")
    t = case.tools[0]
    request = ChatRequest(
        model="m",
        tools=(Tool(t["name"], t["description"], t["input_schema"]),),
        messages=(
            Message("user", (Text("What is the weather in Paris?"),)),
            Message("assistant", (ToolUse("call_1", "get_weather", {"city": "Paris"}),)),
            Message("user", (ToolResult("call_1", (Json({"temperature": 18, "condition": "sunny"}),)),)),
        ),
    )
    served = render(CHATML_TOOLS_TEMPLATE, template_messages(request), chat_template.template_tools(request))
    trained = render(CHATML_TOOLS_TEMPLATE, case.messages, template_tools(case))
    assert served == trained
    assert "<tool_response>" in served and served.endswith("<|im_start|>assistant\n")


def test_hf_template_features() -> None:
    # Real GGUF templates use raise_exception, loop controls, tojson without HTML escaping, bos_token.
    template = (
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
        "[{{ m.role }}]{{ m.content | tojson }}{% endfor %}"
        "{% if messages[-1].role != 'user' %}{{ raise_exception('last must be user') }}{% endif %}"
    )
    out = render(template, [{"role": "system", "content": "s"}, {"role": "user", "content": "<b>&"}], bos_token="<s>")
    assert out == '<s>[user]"<b>&"'
    with pytest.raises(errors.InvalidRequest, match="last must be user"):
        render(template, [{"role": "assistant", "content": "x"}])
    with pytest.raises(errors.InvalidRequest, match="failed to render"):
        render("{{ messages[0].content | nosuchfilter }}", [{"role": "user", "content": "x"}])
