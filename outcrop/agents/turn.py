"""What one call of InvokeAgent / InvokeInlineAgent asks of the agent runtime (`Turn`, decoded by the dialect), and
where the turn's time went (`Timings`, for benchmarks/agent_overhead.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from outcrop.agents.definition import AgentDefinition
from outcrop.agents.results import ToolOutcome
from outcrop.conversation import Message
from outcrop.knowledge.retrieval import Retrieval


@dataclass(frozen=True)
class Turn:
    definition: AgentDefinition
    session_id: str
    input_text: str = ""
    enable_trace: bool = False
    end_session: bool = False
    session_attributes: Mapping[str, str] | None = None  # None: keep the session's
    prompt_session_attributes: Mapping[str, str] | None = None
    results: tuple[ToolOutcome, ...] = ()
    invocation_id: str | None = None
    retrievals: Mapping[str, Retrieval] = field(default_factory=dict)  # per knowledge base id
    history: tuple[Message, ...] | None = None  # InvokeInlineAgent's conversationHistory (instead of the session's)
    memory_id: str | None = None  # InvokeAgent's memoryId: the memory the session belongs to (memory.py)


@dataclass
class Timings:
    """Where one turn's time went (benchmarks/agent_overhead.py)."""

    model_ms: float = 0.0  # inside Inference: from handing it the request to the model's last event
    model_calls: int = 0
    tool_ms: float = 0.0  # knowledge-base searches and Lambda calls
    session_ms: float = 0.0  # reading and writing the session
    total_ms: float = 0.0  # the whole turn, from start() to the last event
