"""Action groups whose executor is a Lambda function: this server POSTs Bedrock's Lambda input event (JSON) to the
local URL the server's owner mapped the function's ARN to, and reads Bedrock's Lambda response from the answer.

Input event (messageVersion 1.0): agent {name, id, alias, version}, inputText, sessionId, actionGroup, function
+ parameters [{name, type, value}] (functionSchema) or apiPath + httpMethod + parameters + requestBody
{content: {"application/json": {properties: [...]}}} (apiSchema), sessionAttributes, promptSessionAttributes.

Response: {response: {actionGroup, function, functionResponse: {responseState?, responseBody: {"TEXT": {body}}}}}
or, for an API, {response: {actionGroup, apiPath, httpMethod, httpStatusCode, responseState?, responseBody:
{"application/json": {body}}}}; sessionAttributes / promptSessionAttributes there replace the session's. As on
Bedrock, responseState FAILURE fails the turn (DependencyFailedException) and REPROMPT hands the body back to the
model to try again; an API's httpStatusCode of 400 and up is an error result the model reads.

A URL that cannot be reached, does not answer 200 within TIMEOUT_S, or answers something that is not such JSON
fails the turn with a DependencyFailedException naming the function and what went wrong (never a traceback).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from outcrop import errors
from outcrop.agents.definition import AgentDefinition
from outcrop.agents.events import Invocation

TIMEOUT_S = 60.0  # a Lambda function's own default is 3 s, its most 900 s


@dataclass(frozen=True)
class LambdaResult:
    text: str
    state: str | None = None  # REPROMPT (FAILURE raises)
    status: int | None = None  # an API's httpStatusCode
    attributes: Mapping[str, str] | None = None
    prompt_attributes: Mapping[str, str] | None = None

    @property
    def is_error(self) -> bool:
        return self.status is not None and self.status >= 400


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


def _strings(value: Any, what: str, arn: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise errors.ModelFailure(f"The Lambda function {arn} answered {what} that is not a JSON object.")
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


async def invoke(client: httpx.AsyncClient, url: str | None, arn: str, payload: Mapping[str, Any]) -> LambdaResult:
    if url is None:
        raise errors.ModelFailure(f"The Lambda function {arn} has no local URL on this server: its owner maps Lambda "
                                  "ARNs to URLs under [server.agent_lambda_urls] in config.toml.")  # fmt: skip
    where = f"The Lambda function {arn} (at {url})"
    try:
        answer = await client.post(url, json=payload, timeout=TIMEOUT_S)
        answer.raise_for_status()
        data = answer.json()
    except httpx.TimeoutException:
        raise errors.ModelFailure(f"{where} did not answer within {TIMEOUT_S:g} s.") from None
    except httpx.HTTPStatusError as exc:
        raise errors.ModelFailure(f"{where} failed: HTTP {exc.response.status_code}.") from None
    except httpx.HTTPError as exc:
        raise errors.ModelFailure(f"{where} could not be reached: {str(exc) or type(exc).__name__}") from None
    except ValueError:
        raise errors.ModelFailure(f"{where} answered something that is not JSON.") from None
    response = data.get("response") if isinstance(data, Mapping) else None
    inner = response.get("functionResponse", response) if isinstance(response, Mapping) else None
    if not isinstance(inner, Mapping):
        raise errors.ModelFailure(f"The Lambda function {arn} answered without a 'response' object "
                                  "(Bedrock's Lambda response: {messageVersion, response: {...}}).")  # fmt: skip
    text = _body_text(inner.get("responseBody"))
    state = inner.get("responseState")
    if state == "FAILURE":
        raise errors.ModelFailure(f"The Lambda function {arn} answered responseState FAILURE: {text or '(no body)'}")
    status = inner.get("httpStatusCode")
    return LambdaResult(text, state if state == "REPROMPT" else None, status if isinstance(status, int) else None,
                        _strings(data.get("sessionAttributes"), "sessionAttributes", arn),
                        _strings(data.get("promptSessionAttributes"), "promptSessionAttributes", arn))  # fmt: skip
