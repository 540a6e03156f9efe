"""Render a model's own chat template (the Jinja text in its GGUF metadata).

Templates are written for Hugging Face's renderer, so we copy its environment: trim_blocks,
lstrip_blocks, loop controls, a `tojson` that does not HTML-escape, `raise_exception` and
`strftime_now`. Messages and tools are given in the shape those templates expect (OpenAI-style
dicts, tool-call arguments as objects).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from outcrop.conversation import ChatRequest, Json, Text, ToolResult, ToolUse
from outcrop.errors import InvalidRequest

# The built-in model's template: ChatML with Hermes-style tool calls, compact so the tiny model
# trains quickly. Real models bring their own template in their GGUF metadata.
CHATML_TOOLS_TEMPLATE = """\
{%- if messages and messages[0].role == 'system' %}{% set sys = messages[0].content %}\
{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}
{%- if sys or tools %}<|im_start|>system
{{ sys }}{% if tools %}{% if sys %}

{% endif %}# Tools
To call a tool, answer <tool_call>{"name": ..., "arguments": {...}}</tool_call>.
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>{% endif %}<|im_end|>
{% endif %}
{%- for m in rest %}
{%- if m.role == 'user' %}<|im_start|>user
{{ m.content }}<|im_end|>
{% elif m.role == 'assistant' %}<|im_start|>assistant
{% if m.content %}{{ m.content }}{% endif %}{% for tc in m.tool_calls or [] %}<tool_call>
{"name": {{ tc.function.name | tojson }}, "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _raise(message: str) -> None:
    raise InvalidRequest(f"The model's chat template rejected the conversation: {message}")


@lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def render(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    try:
        return str(
            _compile(template).render(
                messages=list(messages),
                tools=list(tools) if tools else None,
                add_generation_prompt=add_generation_prompt,
                bos_token=bos_token,
                eos_token=eos_token,
            )
        )
    except InvalidRequest:
        raise
    except TemplateError as exc:
        raise InvalidRequest(f"The model's chat template failed to render: {exc}") from exc


def tool_result_text(part: ToolResult) -> str:
    pieces = [p.text if isinstance(p, Text) else _tojson(p.value) for p in part.content]
    return "\n".join(pieces)


def template_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The canonical conversation in the OpenAI-style dicts that chat templates read."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "assistant":
            calls = [
                {
                    "id": p.id,
                    "type": "function",
                    "function": {"name": p.name, "arguments": dict(p.input)},
                }
                for p in message.parts
                if isinstance(p, ToolUse)
            ]
            entry: dict[str, Any] = {"role": "assistant", "content": message.text}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
            continue
        text = message.text
        for part in message.parts:
            if isinstance(part, ToolResult):
                out.append({"role": "tool", "tool_call_id": part.tool_use_id, "content": tool_result_text(part)})
        if text or not any(isinstance(p, ToolResult) for p in message.parts):
            out.append({"role": "user", "content": text})
    return out


def template_tools(request: ChatRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": dict(t.input_schema)},
        }
        for t in request.tools
    ]


__all__ = ["CHATML_TOOLS_TEMPLATE", "Json", "render", "template_messages", "template_tools"]
