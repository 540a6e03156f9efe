"""The model requests of an agent turn: the orchestration prompt (the instruction as the system prompt, earlier
turns, the question and the plan so far as messages, the agent's tools), its sampling, and the texts the trace
shows of a request and of the model's answer.

An ORCHESTRATION promptOverrideConfiguration entry with promptCreationMode OVERRIDDEN replaces the system prompt
with its basePromptTemplate, where `$instruction$` and `$prompt_session_attributes$` are filled in; its
inferenceConfiguration (maximumLength, temperature, topP, topK, stopSequences) is the request's sampling. The
summaries of the session's memory (memory.py) are a section of the default prompt, or fill `$memory_content$`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from outcrop.agents.definition import AgentDefinition, PromptType
from outcrop.conversation import (
    ChatRequest,
    ChatResult,
    GuardrailRef,
    Message,
    Sampling,
    Text,
    Tool,
    ToolResult,
    ToolUse,
)

TOOLS_NOTE = "Use the tools when they help; when you can answer, answer the user directly, without a tool call."
CITE_NOTE = ("Knowledge base search results are numbered; end each sentence that uses one with its number in "
             "square brackets, like [1].")  # fmt: skip


def sampling(d: AgentDefinition, prompt_type: PromptType = "ORCHESTRATION") -> Sampling:
    """The inferenceConfiguration of the agent's override of this prompt, as the request's sampling."""
    override = d.prompt_override(prompt_type)
    config = (override.inference or {}) if override else {}
    if not config:
        return Sampling()
    return Sampling(max_tokens=config.get("maximumLength"), temperature=config.get("temperature"),
                    top_p=config.get("topP"), top_k=config.get("topK"),
                    stop=tuple(config.get("stopSequences") or ()))  # fmt: skip


def attribute_lines(attributes: Mapping[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in attributes.items())


def system(d: AgentDefinition, prompt_attributes: Mapping[str, str], has_tools: bool, has_knowledge: bool,
           memory: Sequence[str] = ()) -> str:  # fmt: skip
    """The orchestration system prompt. `memory`: summaries of the memory's earlier sessions, oldest first."""
    lines = attribute_lines(prompt_attributes)
    remembered = "\n".join(f"- {s}" for s in memory)
    override = d.prompt_override("ORCHESTRATION")
    if override and override.template and override.creation_mode == "OVERRIDDEN":
        filled = override.template.replace("$instruction$", d.instruction)
        return filled.replace("$prompt_session_attributes$", lines).replace("$memory_content$", remembered)
    parts = [d.instruction]
    if remembered:
        parts.append(f"Summaries of your earlier conversations with this user, oldest first:\n{remembered}")
    if lines:
        parts.append(f"About this conversation:\n{lines}")
    if has_tools:
        parts.append(TOOLS_NOTE)
    if has_knowledge:
        parts.append(CITE_NOTE)
    return "\n\n".join(parts)


def history(turns: Sequence[tuple[str, str]]) -> list[Message]:
    """A session's finished turns as messages."""
    out: list[Message] = []
    for question, answer in turns:
        out += [Message("user", (Text(question),)), Message("assistant", (Text(answer),))]
    return out


def chat_request(d: AgentDefinition, messages: Sequence[Message], system_prompt: str, tools: tuple[Tool, ...],
                 trace: bool, prompt_type: PromptType = "ORCHESTRATION") -> ChatRequest:  # fmt: skip
    refs: tuple[GuardrailRef, ...] = ()
    if d.guardrail is not None:
        shown: Literal["enabled", "disabled"] = "enabled" if trace else "disabled"
        refs = (GuardrailRef(d.guardrail.identifier, d.guardrail.version, shown),)
    return ChatRequest(model=d.foundation_model, messages=tuple(messages), system=system_prompt, tools=tools,
                       sampling=sampling(d, prompt_type), guardrails=refs)  # fmt: skip


def prompt_text(chat: ChatRequest) -> str:
    """A request as the trace's modelInvocationInput.text: system, messages and tools as JSON."""

    def part(p: Any) -> Any:
        if isinstance(p, Text):
            return p.text
        if isinstance(p, ToolUse):
            return {"toolUse": {"name": p.name, "input": dict(p.input)}}
        if isinstance(p, ToolResult):
            return {"toolResult": [c.text if isinstance(c, Text) else c.value for c in p.content]}
        return None

    return json.dumps({"system": chat.system,
                       "messages": [{"role": m.role, "content": [part(p) for p in m.parts]} for m in chat.messages],
                       "tools": [{"name": t.name, "description": t.description} for t in chat.tools]},
                      ensure_ascii=False)  # fmt: skip


def raw(result: ChatResult) -> str:
    """The model's answer as the trace's rawResponse: its text, and its tool calls as JSON."""
    out = [p.text if isinstance(p, Text) else json.dumps({"name": p.name, "arguments": dict(p.input)})
           for p in result.parts]  # fmt: skip
    return "".join(out)
