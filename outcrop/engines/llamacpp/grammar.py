"""GBNF grammars for constrained decoding: a JSON schema (response formats) or a forced tool call.

Grammars are text here; each sequence compiles its own sampler from the text (llama.cpp's grammar
sampler), so they are cached as text and any number of requests can use the same one at once.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from outcrop import errors
from outcrop.conversation import ChatRequest


@lru_cache(maxsize=256)
def _schema_gbnf_cached(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return str(json_schema_to_gbnf(schema_json))


def _schema_gbnf(schema: Any) -> str:
    try:
        return _schema_gbnf_cached(json.dumps(schema))  # key order matters: it is the order properties are written in
    except Exception as exc:  # the converter raises bare Exceptions for what it cannot express
        raise errors.InvalidRequest(f"The JSON schema cannot be enforced: {exc}") from exc


def _tool_call_gbnf(request: ChatRequest) -> str:
    tools = request.tools
    if request.tool_choice.kind == "tool":
        tools = tuple(t for t in tools if t.name == request.tool_choice.name)
        if not tools:
            raise errors.InvalidRequest(
                f"toolChoice names the tool '{request.tool_choice.name}', which is not among the tools given."
            )
    schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": dict(t.input_schema) or {"type": "object"}},
                "required": ["name", "arguments"],
            }
            for t in tools
        ]
    }
    body = _schema_gbnf(schema).replace("root ::=", "call ::=", 1)
    return 'root ::= "<tool_call>" "\\n"? call "\\n"? "</tool_call>"\n' + body


def _json_gbnf(request: ChatRequest) -> str | None:
    fmt = request.response_format
    if fmt is None:
        return None
    if fmt.kind == "json_schema" and fmt.schema is not None:
        return _schema_gbnf(fmt.schema)
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


def grammar_for(request: ChatRequest) -> str | None:
    """The grammar a request's answer must follow, if any: a forced tool call, else its response format."""
    if request.tools and request.tool_choice.kind in ("any", "tool"):
        return _tool_call_gbnf(request)
    return _json_gbnf(request)
