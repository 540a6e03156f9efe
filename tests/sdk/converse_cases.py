"""The built-in model's scripted cases (outcrop/models/tiny_script.py) as Bedrock Converse arguments."""

from __future__ import annotations

import json
from typing import Any

from outcrop.models.tiny_script import WEATHER_TOOL, Case


def tool_config(tool: dict[str, Any] = WEATHER_TOOL) -> dict[str, Any]:
    spec = {"name": tool["name"], "description": tool["description"], "inputSchema": {"json": tool["input_schema"]}}
    return {"tools": [{"toolSpec": spec}]}


def converse_kwargs(case: Case) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"inferenceConfig": {"temperature": 0, "maxTokens": 200}}
    messages: list[dict[str, Any]] = []
    for m in case.messages:
        if m["role"] == "system":
            kwargs["system"] = [{"text": m["content"]}]
        elif m["role"] == "tool":
            result = {"toolUseId": m["tool_call_id"], "content": [{"json": json.loads(m["content"])}]}
            messages.append({"role": "user", "content": [{"toolResult": result}]})
        elif m.get("tool_calls"):
            uses = [
                {"toolUse": {"toolUseId": c["id"], "name": c["function"]["name"], "input": c["function"]["arguments"]}}
                for c in m["tool_calls"]
            ]
            messages.append({"role": "assistant", "content": uses})
        else:
            messages.append({"role": m["role"], "content": [{"text": m["content"]}]})
    kwargs["messages"] = messages
    if case.tools:
        kwargs["toolConfig"] = tool_config()
    return kwargs
