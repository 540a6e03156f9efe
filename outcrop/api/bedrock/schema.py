"""Wire types of Converse / ConverseStream / CountTokens, with botocore's member names.

Validation is strict where Bedrock's is (unknown members, wrong types, unions with more or fewer than
one member) so a caller hears what is wrong instead of getting a silently different answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from outcrop.errors import InvalidRequest


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Union(_Wire):
    """A Smithy union: exactly one member may be set."""

    @model_validator(mode="after")
    def _one_member(self) -> _Union:
        present = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(present) != 1:
            names = ", ".join(type(self).model_fields)
            raise ValueError(f"exactly one of [{names}] must be set, got {len(present)}")
        return self


class ImageSource(_Union):
    bytes: str | None = None
    s3Location: dict[str, Any] | None = None


class ImageBlock(_Wire):
    format: Literal["png", "jpeg", "gif", "webp"]
    source: ImageSource


class ToolUseBlock(_Wire):
    toolUseId: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    input: Any
    type: str | None = None


class ToolResultContent(_Union):
    json_: Any = Field(default=None, alias="json")
    text: str | None = None
    image: ImageBlock | None = None
    document: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    searchResult: dict[str, Any] | None = None


class ToolResultBlock(_Wire):
    toolUseId: str = Field(min_length=1, max_length=64)
    content: list[ToolResultContent]
    status: Literal["success", "error"] | None = None
    type: str | None = None


class GuardContentText(_Wire):
    text: str
    qualifiers: list[Literal["grounding_source", "query", "guard_content"]] | None = None


class GuardContent(_Union):
    text: GuardContentText | None = None
    image: dict[str, Any] | None = None


class ContentBlock(_Union):
    text: str | None = None
    image: ImageBlock | None = None
    document: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    toolUse: ToolUseBlock | None = None
    toolResult: ToolResultBlock | None = None
    guardContent: GuardContent | None = None
    cachePoint: dict[str, Any] | None = None
    reasoningContent: dict[str, Any] | None = None
    citationsContent: dict[str, Any] | None = None
    searchResult: dict[str, Any] | None = None


class Message(_Wire):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class SystemBlock(_Union):
    text: str | None = None
    guardContent: GuardContent | None = None
    cachePoint: dict[str, Any] | None = None


class InferenceConfig(_Wire):
    maxTokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=1)
    topP: float | None = Field(default=None, ge=0, le=1)
    stopSequences: list[str] | None = Field(default=None, max_length=2500)


class ToolInputSchema(_Union):
    json_: Any = Field(default=None, alias="json")


class ToolSpec(_Wire):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = Field(default=None, min_length=1)
    inputSchema: ToolInputSchema
    strict: bool | None = None


class Tool(_Union):
    toolSpec: ToolSpec | None = None
    systemTool: dict[str, Any] | None = None
    cachePoint: dict[str, Any] | None = None


class SpecificToolChoice(_Wire):
    name: str = Field(min_length=1, max_length=64)


class ToolChoice(_Union):
    auto: dict[str, Any] | None = None
    any: dict[str, Any] | None = None
    tool: SpecificToolChoice | None = None


class ToolConfig(_Wire):
    tools: list[Tool] = Field(min_length=1)
    toolChoice: ToolChoice | None = None


class GuardrailConfig(_Wire):
    guardrailIdentifier: str
    guardrailVersion: str
    trace: Literal["enabled", "disabled", "enabled_full"] | None = None
    streamProcessingMode: Literal["sync", "async"] | None = None


class ConverseRequest(_Wire):
    messages: list[Message] | None = None
    system: list[SystemBlock] | None = None
    inferenceConfig: InferenceConfig | None = None
    toolConfig: ToolConfig | None = None
    guardrailConfig: GuardrailConfig | None = None
    additionalModelRequestFields: dict[str, Any] | None = None
    additionalModelResponseFieldPaths: list[str] | None = None
    promptVariables: dict[str, Any] | None = None
    requestMetadata: dict[str, str] | None = None
    performanceConfig: dict[str, Any] | None = None
    serviceTier: dict[str, Any] | None = None
    outputConfig: dict[str, Any] | None = None


class CountTokensInvoke(_Wire):
    body: str


class CountTokensConverse(_Wire):
    messages: list[Message] | None = None
    system: list[SystemBlock] | None = None
    toolConfig: ToolConfig | None = None
    additionalModelRequestFields: dict[str, Any] | None = None


class CountTokensInput(_Union):
    invokeModel: CountTokensInvoke | None = None
    converse: CountTokensConverse | None = None


class CountTokensRequest(_Wire):
    input: CountTokensInput


def describe(exc: ValidationError) -> str:
    """pydantic's errors as one sentence a Bedrock caller can act on."""
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"] if p not in ("json_",)) or "body"
        where = where.replace("json_", "json")
        if err["type"] == "extra_forbidden":
            problems.append(f"extraneous key [{where}] is not permitted")
        elif err["type"] == "missing":
            problems.append(f"required key [{where}] not found")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"Value at '{where}' failed to satisfy constraint: {msg}")
    more = len(exc.errors()) - len(problems)
    tail = f" (and {more} more)" if more > 0 else ""
    n = len(exc.errors())
    return f"{n} validation error{'s' if n != 1 else ''} detected: " + "; ".join(problems) + tail


def parse(model: type[_Wire], body: object) -> Any:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from exc


class NativeBody(BaseModel):
    """An InvokeModel body in a provider's own format: unknown members are refused, as Bedrock does."""

    model_config = ConfigDict(extra="forbid")


def malformed(exc: ValidationError) -> str:
    """Bedrock's wording for an InvokeModel body that does not validate."""
    return f"Malformed input request: {describe(exc)}, please reformat your input and try again."


def parse_native(model: type[NativeBody], body: object) -> Any:
    if not isinstance(body, dict):
        raise InvalidRequest("Malformed input request: the body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(malformed(exc)) from exc
