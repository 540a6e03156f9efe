"""A returnControl's results: what the caller sends back in sessionState.returnControlInvocationResults (each a
functionResult or an apiResult, as `ToolOutcome`), checked against the plan the session keeps waiting (`Pending`)
and turned into the tool results of the model's calls they answer.

Every call of the invocation must be answered, and nothing else. As on Bedrock, `responseState` FAILURE fails the
turn (DependencyFailedException) and REPROMPT hands the body back to the model to try again; an apiResult's
httpStatusCode of 400 and up is an error result the model reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from outcrop import errors
from outcrop.agents.sessions import AgentSession, Pending, PendingCall
from outcrop.conversation import Text, ToolResult


@dataclass(frozen=True)
class ToolOutcome:
    """A result of returnControlInvocationResults: a functionResult or an apiResult."""

    action_group: str
    body: str
    function: str | None = None
    api_path: str | None = None
    method: str | None = None
    status: int | None = None
    state: str | None = None  # FAILURE | REPROMPT


def check_pending(session: AgentSession, invocation_id: str | None) -> None:
    """Results are only for the returnControl the session waits for (the caller may leave its id out)."""
    pending = session.pending
    if pending is None:
        raise errors.InvalidRequest(f"Session {session.session_id} has no returnControl waiting for results.")
    if invocation_id and invocation_id != pending.invocation_id:
        raise errors.InvalidRequest(f"invocationId {invocation_id} is not the returnControl this session waits "
                                    f"for ({pending.invocation_id}).")  # fmt: skip


def _matches(call: PendingCall, r: ToolOutcome) -> bool:
    if call.action_group != r.action_group:
        return False
    if call.function is not None:
        return r.function == call.function
    return r.api_path == call.api_path and (r.method is None or r.method.upper() == (call.method or ""))


def result_parts(pending: Pending, outcomes: tuple[ToolOutcome, ...]) -> list[ToolResult]:
    """The caller's results as tool results of the calls they answer, in the calls' order."""
    left = list(outcomes)
    parts: list[ToolResult] = []
    for call in pending.calls:
        found = next((r for r in left if _matches(call, r)), None)
        if found is None:
            name = f"{call.action_group} {call.function or f'{call.method} {call.api_path}'}"
            raise errors.InvalidRequest(f"returnControlInvocationResults has no result for {name}; answer every "
                                        f"call of invocation {pending.invocation_id}.")  # fmt: skip
        left.remove(found)
        if found.state == "FAILURE":
            name = f"{call.action_group} {call.function or f'{call.method} {call.api_path}'}"
            raise errors.ModelFailure(f"The result for {name} has responseState FAILURE: {found.body or '(no body)'}")
        failed = found.status is not None and found.status >= 400
        body = found.body if found.state != "REPROMPT" else f"Please try again: {found.body}"
        parts.append(ToolResult(call.tool_use_id, (Text(body),), failed))
    if left:
        extra = left[0]
        raise errors.InvalidRequest(f"returnControlInvocationResults answers a call that was not made: "
                                    f"{extra.action_group} {extra.function or extra.api_path}.")  # fmt: skip
    return parts
