"""InvokeAgent / InvokeInlineAgent bodies -> the agent loop's Turn, and its events -> the event-stream frames
botocore decodes (`completion`: chunk, trace, returnControl; errors as exception events, errors.py).

Pure: bodies come already checked against botocore's model. Refused by name: sessionState.files (no code
interpreter here), knowledgeBaseConfigurations naming a knowledge base the agent does not have.
Accepted with no effect: bedrockModelConfigurations, promptCreationConfigurations, streamingConfigurations (the
answer is sent as one chunk once the turn has it; guardrails check it whole).

Frames:
- chunk {bytes (base64 in the JSON payload), attribution {citations}} — citations as RetrieveAndGenerate's, spans
  with inclusive ends (convert.citation);
- trace {agentId, agentAliasId, agentVersion, sessionId, eventTime, trace {orchestrationTrace | preProcessingTrace |
  postProcessingTrace | guardrailTrace | failureTrace}}: orchestrationTrace holds one of modelInvocationInput,
  modelInvocationOutput, rationale, invocationInput, observation, each with the traceId of its step; pre- and
  postProcessingTrace a modelInvocationInput or a modelInvocationOutput with its parsedResponse;
- returnControl {invocationId, invocationInputs [functionInvocationInput | apiInvocationInput]}.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

from outcrop import errors
from outcrop.agents.definition import AgentDefinition
from outcrop.agents.events import (
    AgentEvent,
    Chunk,
    Failure,
    Finish,
    GuardrailStep,
    Invocation,
    ModelInput,
    ModelOutput,
    Rationale,
    ReturnControl,
    ToolInput,
    ToolOutput,
)
from outcrop.agents.loop import ToolOutcome, Turn
from outcrop.api.bedrock import eventstream
from outcrop.api.bedrock_agent_runtime.convert import citation, reference, retrieval
from outcrop.conversation import Message, Text


def _outcomes(results: list[Mapping[str, Any]]) -> tuple[ToolOutcome, ...]:
    out = []
    for i, r in enumerate(results):
        if "functionResult" in r:
            f = r["functionResult"]
            out.append(ToolOutcome(f["actionGroup"], _body(f.get("responseBody")), function=f.get("function"),
                                   state=f.get("responseState")))  # fmt: skip
        elif "apiResult" in r:
            a = r["apiResult"]
            out.append(ToolOutcome(a["actionGroup"], _body(a.get("responseBody")), api_path=a.get("apiPath"),
                                   method=a.get("httpMethod"), status=a.get("httpStatusCode"),
                                   state=a.get("responseState")))  # fmt: skip
        else:
            raise errors.InvalidRequest(f"returnControlInvocationResults.{i} needs a functionResult or an apiResult.")
    return tuple(out)


def _body(body: Mapping[str, Any] | None) -> str:
    """A ResponseBody (content type -> {body}) as the text the model reads."""
    if not body:
        return ""
    return "\n".join(str((v or {}).get("body") or "") for v in body.values())


def _history(raw: Mapping[str, Any] | None) -> tuple[Message, ...] | None:
    if not raw or not raw.get("messages"):
        return None
    return tuple(Message(m["role"], tuple(Text(c["text"]) for c in m["content"] if "text" in c))
                 for m in raw["messages"])  # fmt: skip


def decode_turn(definition: AgentDefinition, session_id: str, body: Mapping[str, Any], state_member: str) -> Turn:
    """`state_member`: sessionState (InvokeAgent) or inlineSessionState (InvokeInlineAgent)."""
    state = body.get(state_member) or {}
    if state.get("files"):
        raise errors.InvalidRequest(f"{state_member}.files: this server has no code interpreter to give files to.")
    retrievals = {kb.knowledge_base_id: retrieval(kb.retrieval, f"knowledgeBases.{kb.knowledge_base_id}")
                  for kb in definition.knowledge_bases if kb.retrieval}  # fmt: skip
    known = {kb.knowledge_base_id for kb in definition.knowledge_bases}
    for i, kbc in enumerate(state.get("knowledgeBaseConfigurations") or ()):
        where = f"{state_member}.knowledgeBaseConfigurations.{i}"
        if kbc["knowledgeBaseId"] not in known:
            raise errors.InvalidRequest(f"{where}.knowledgeBaseId {kbc['knowledgeBaseId']} is not one of the agent's "
                                        "knowledge bases.")  # fmt: skip
        retrievals[kbc["knowledgeBaseId"]] = retrieval(kbc["retrievalConfiguration"], f"{where}.retrievalConfiguration")
    return Turn(
        definition=definition,
        session_id=session_id,
        input_text=body.get("inputText") or "",
        enable_trace=bool(body.get("enableTrace")),
        end_session=bool(body.get("endSession")),
        session_attributes=state.get("sessionAttributes"),
        prompt_session_attributes=state.get("promptSessionAttributes"),
        results=_outcomes(state.get("returnControlInvocationResults") or []),
        invocation_id=state.get("invocationId"),
        retrievals=retrievals,
        history=_history(state.get("conversationHistory")),
        memory_id=body.get("memoryId") or None,
    )


# --- encoding ------------------------------------------------------------------------------------------------


def _params(items: tuple[tuple[str, str, str], ...]) -> list[dict[str, str]]:
    return [{"name": n, "type": t, "value": v} for n, t, v in items]


def invocation_input(call: Invocation) -> dict[str, Any]:
    """A returnControl's invocationInputs member."""
    if call.kind == "FUNCTION":
        return {"functionInvocationInput": {"actionGroup": call.action_group, "function": call.function,
                                            "parameters": _params(call.parameters),
                                            "actionInvocationType": "RESULT"}}  # fmt: skip
    api: dict[str, Any] = {"actionGroup": call.action_group, "apiPath": call.api_path, "httpMethod": call.method,
                           "parameters": _params(call.parameters), "actionInvocationType": "RESULT"}  # fmt: skip
    if call.body:
        api["requestBody"] = {"content": {"application/json": {"properties": _params(call.body)}}}
    return {"apiInvocationInput": api}


def _trace_input(call: Invocation) -> dict[str, Any]:
    if call.kind == "KNOWLEDGE_BASE":
        lookup = {"knowledgeBaseId": call.knowledge_base_id, "text": call.query}
        return {"invocationType": "KNOWLEDGE_BASE", "knowledgeBaseLookupInput": lookup}
    group: dict[str, Any] = {"actionGroupName": call.action_group, "executionType": call.execution,
                             "parameters": _params(call.parameters)}  # fmt: skip
    if call.kind == "FUNCTION":
        group["function"] = call.function
    else:
        group["apiPath"], group["verb"] = call.api_path, call.method
        if call.body:
            group["requestBody"] = {"content": {"application/json": _params(call.body)}}
    return {"invocationType": "ACTION_GROUP", "actionGroupInvocationInput": group}


def _orchestration(event: AgentEvent) -> dict[str, Any] | None:
    match event:
        case ModelInput(step=step, model=model, text=text, sampling=s, prompt_type=kind):
            config: dict[str, Any] = {}
            for key, value in (("maximumLength", s.max_tokens), ("temperature", s.temperature), ("topP", s.top_p),
                               ("topK", s.top_k)):  # fmt: skip
                if value is not None:
                    config[key] = value
            if s.stop:
                config["stopSequences"] = list(s.stop)
            given: dict[str, Any] = {"traceId": step, "text": text, "type": kind, "foundationModel": model,
                                     "inferenceConfiguration": config}  # fmt: skip
            if event.creation_mode:
                given["promptCreationMode"] = event.creation_mode
            if event.parser_mode:
                given["parserMode"] = event.parser_mode
            return {"modelInvocationInput": given}
        case ModelOutput(step=step, raw=raw, usage=u, ms=ms, parsed=parsed):
            meta = {"usage": {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens}, "totalTimeMs": ms}
            out = {"traceId": step, "rawResponse": {"content": raw}, "metadata": meta}
            if parsed is not None:
                out["parsedResponse"] = dict(parsed)
            return {"modelInvocationOutput": out}
        case Rationale(step=step, text=text):
            return {"rationale": {"traceId": step, "text": text}}
        case ToolInput(step=step, call=call):
            return {"invocationInput": {"traceId": step, **_trace_input(call)}}
        case ToolOutput(step=step, call=call, text=text, passages=passages):
            if call.kind == "KNOWLEDGE_BASE":
                refs = [reference(p) for p in passages]
                return {"observation": {"traceId": step, "type": "KNOWLEDGE_BASE",
                                        "knowledgeBaseLookupOutput": {"retrievedReferences": refs}}}  # fmt: skip
            return {"observation": {"traceId": step, "type": "ACTION_GROUP",
                                    "actionGroupInvocationOutput": {"text": text}}}  # fmt: skip
        case Finish(step=step, text=text):
            return {"observation": {"traceId": step, "type": "FINISH", "finalResponse": {"text": text}}}
    return None


def _trace_body(event: AgentEvent) -> dict[str, Any] | None:
    if isinstance(event, GuardrailStep):
        g = event.trace
        outputs = [a for group in g.output_assessments.values() for a in group]
        return {"guardrailTrace": {"traceId": event.step, "action": "INTERVENED" if g.intervened else "NONE",
                                   "inputAssessments": list(g.input_assessment.values()),
                                   "outputAssessments": outputs}}  # fmt: skip
    if isinstance(event, Failure):
        return {"failureTrace": {"traceId": event.step, "failureReason": event.reason}}
    orchestration = _orchestration(event)
    if orchestration is None:
        return None
    kind = event.prompt_type if isinstance(event, ModelInput | ModelOutput) else "ORCHESTRATION"
    return {_TRACES.get(kind, "orchestrationTrace"): orchestration}


_TRACES = {"PRE_PROCESSING": "preProcessingTrace", "POST_PROCESSING": "postProcessingTrace"}


def encode_event(event: AgentEvent, definition: AgentDefinition, session_id: str) -> bytes | None:
    if isinstance(event, Chunk):
        chunk: dict[str, Any] = {"bytes": base64.b64encode(event.text.encode()).decode()}
        if event.citations:
            chunk["attribution"] = {"citations": [citation(c) for c in event.citations]}
        return eventstream.event("chunk", chunk)
    if isinstance(event, ReturnControl):
        inputs = [invocation_input(c) for c in event.calls]
        return eventstream.event("returnControl", {"invocationId": event.invocation_id, "invocationInputs": inputs})
    body = _trace_body(event)
    if body is None:
        return None
    part: dict[str, Any] = {"sessionId": session_id, "eventTime": time.time(), "trace": body}
    if not definition.is_inline:
        part.update(agentId=definition.agent_id, agentAliasId=definition.alias_id, agentVersion=definition.version)
    return eventstream.event("trace", part)
