"""What one agent turn produces, as typed values; the dialect (api/bedrock_agent_runtime/agent_convert.py) turns
them into InvokeAgent's event-stream frames.

- `Chunk`: (part of) the answer, with the knowledge-base passages it rests on (`citations`);
- `ReturnControl`: the turn stops here; the caller runs `calls` and answers them in the next call;
- trace steps, sent only when the caller asked for a trace (enableTrace), in the order they happen; each
  carries the id of the step (one per model call) it belongs to; pre- and post-processing calls are a
  `ModelInput` / `ModelOutput` pair of their prompt_type around the orchestration's:
  `ModelInput` -> `ModelOutput` -> `Rationale` (text the model wrote before calling tools) -> `ToolInput` /
  `ToolOutput` for each call -> ... -> `ModelInput` -> `ModelOutput` -> `Finish`; `GuardrailStep` when a guardrail
  assessed the call, `Failure` before an error ends the turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from outcrop.conversation import GuardrailTrace, Sampling, Usage
from outcrop.knowledge.rag import Cited
from outcrop.knowledge.retrieval import Passage


@dataclass(frozen=True)
class Invocation:
    """One tool call of the model, in the agent's terms."""

    kind: Literal["FUNCTION", "API", "KNOWLEDGE_BASE"]
    tool_use_id: str
    action_group: str = ""  # FUNCTION / API
    function: str = ""  # FUNCTION
    api_path: str = ""  # API
    method: str = ""  # API (upper case)
    parameters: tuple[tuple[str, str, str], ...] = ()  # (name, type, value as text), as Bedrock sends them
    body: tuple[tuple[str, str, str], ...] = ()  # API: properties of the application/json request body
    knowledge_base_id: str = ""  # KNOWLEDGE_BASE
    query: str = ""  # KNOWLEDGE_BASE
    execution: Literal["RETURN_CONTROL", "LAMBDA", "KNOWLEDGE_BASE"] = "RETURN_CONTROL"


@dataclass(frozen=True)
class Chunk:
    text: str
    citations: tuple[Cited, ...] = ()


@dataclass(frozen=True)
class ReturnControl:
    invocation_id: str
    calls: tuple[Invocation, ...]


@dataclass(frozen=True)
class ModelInput:
    step: str
    model: str
    text: str  # the prompt, as JSON: system, messages, tools
    sampling: Sampling = field(default_factory=Sampling)
    prompt_type: str = "ORCHESTRATION"  # PRE_PROCESSING / POST_PROCESSING: their own trace (processing.py)
    creation_mode: str | None = None  # promptCreationMode / parserMode of the prompt's override, if it has one
    parser_mode: str | None = None


@dataclass(frozen=True)
class ModelOutput:
    step: str
    raw: str  # the model's answer: text, and tool calls as JSON
    usage: Usage = field(default_factory=Usage)
    ms: int = 0
    prompt_type: str = "ORCHESTRATION"
    parsed: Mapping[str, Any] | None = None  # pre: {isValid, rationale}; post: {text}


@dataclass(frozen=True)
class Rationale:
    step: str
    text: str


@dataclass(frozen=True)
class ToolInput:
    step: str
    call: Invocation


@dataclass(frozen=True)
class ToolOutput:
    step: str
    call: Invocation
    text: str = ""
    passages: tuple[Passage, ...] = ()
    is_error: bool = False  # an API's httpStatusCode of 400 and up: the model reads it as a failed call


@dataclass(frozen=True)
class Finish:
    step: str
    text: str


@dataclass(frozen=True)
class GuardrailStep:
    step: str
    trace: GuardrailTrace


@dataclass(frozen=True)
class Failure:
    step: str
    reason: str


TraceStep = ModelInput | ModelOutput | Rationale | ToolInput | ToolOutput | Finish | GuardrailStep | Failure
AgentEvent = Chunk | ReturnControl | TraceStep
