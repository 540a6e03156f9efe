"""Action groups whose executor is a Lambda function: this server POSTs Bedrock's Lambda input event (JSON) to the
local URL the server's owner mapped the function's ARN to, and reads Bedrock's Lambda response from the answer.

Input event (messageVersion 1.0): agent {name, id, alias, version}, inputText, sessionId, actionGroup, function
+ parameters [{name, type, value}] (functionSchema) or apiPath + httpMethod + parameters + requestBody
{content: {"application/json": {properties: [...]}}} (apiSchema), sessionAttributes, promptSessionAttributes.

Response: {response: {actionGroup, function, functionResponse: {responseState?, responseBody: {"TEXT": {body}}}}}
or, for an API, {response: {actionGroup, apiPath, httpMethod, httpStatusCode, responseBody: {"application/json":
{body}}}}; sessionAttributes / promptSessionAttributes there replace the session's. A URL that does not answer
200 with such JSON fails the turn with DependencyFailedException naming the function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from outcrop import errors
from outcrop.agents.definition import AgentDefinition
from outcrop.agents.events import Invocation

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LambdaResult:
    text: str
    state: str | None = None  # FAILURE | REPROMPT
    attributes: Mapping[str, str] | None = None
    prompt_attributes: Mapping[str, str] | None = None


def _properties(items: tuple[tuple[str, str, str], ...]) -> list[dict[str, str]]:
    return [{"name": n, "type": t, "value": v} for n, t, v in items]


def event(definition: AgentDefinition, call: Invocation, session_id: str, input_text: str,
          attributes: Mapping[str, str], prompt_attributes: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "messageVersion": "1.0",
        "agent": {
            "name": definition.name or definition.agent_id,
            "id": definition.agent_id,
            "alias": definition.alias_id,
            "version": definition.version,
        },
        "inputText": input_text,
        "sessionId": session_id,
        "actionGroup": call.action_group,
        "parameters": _properties(call.parameters),
        "sessionAttributes": dict(attributes),
        "promptSessionAttributes": dict(prompt_attributes),
    }
    if call.kind == "FUNCTION":
        out["function"] = call.function
    else:
        out["apiPath"], out["httpMethod"] = call.api_path, call.method
        if call.body:
            out["requestBody"] = {"content": {"application/json": {"properties": _properties(call.body)}}}
    return out


def _body_text(body: Any) -> str:
    if not isinstance(body, Mapping) or not body:
        return ""
    first = next(iter(body.values()))
    value = first.get("body") if isinstance(first, Mapping) else first
    return value if isinstance(value, str) else "" if value is None else str(value)


async def invoke(client: httpx.AsyncClient, url: str | None, arn: str, payload: Mapping[str, Any]) -> LambdaResult:
    if url is None:
        raise errors.ModelFailure(f"The Lambda function {arn} has no local URL on this server: its owner maps Lambda "
                                  "ARNs to URLs under [server.agent_lambda_urls] in config.toml.")  # fmt: skip
    try:
        answer = await client.post(url, json=payload, timeout=TIMEOUT_S)
        answer.raise_for_status()
        data = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise errors.ModelFailure(f"The Lambda function {arn} (at {url}) failed: {exc}") from None
    response = data.get("response") if isinstance(data, Mapping) else None
    if not isinstance(response, Mapping):
        raise errors.ModelFailure(f"The Lambda function {arn} answered without a 'response' object.")
    inner = response.get("functionResponse", response)
    return LambdaResult(_body_text(inner.get("responseBody")), inner.get("responseState"),
                        data.get("sessionAttributes"), data.get("promptSessionAttributes"))  # fmt: skip
