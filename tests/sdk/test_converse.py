"""Converse and ConverseStream through real boto3 against a real server on the built-in model."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, EventStreamError

from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS, CASES, COUNT_ANSWER
from tests.conftest import CLAUDE
from tests.sdk.converse_cases import converse_kwargs, tool_config

TEXT_CASES = [c for c in CASES if not c.tools]


def _case(name: str):  # type: ignore[no-untyped-def]
    return next(c for c in CASES if c.name == name)


@pytest.mark.parametrize("case", TEXT_CASES, ids=[c.name for c in TEXT_CASES])
def test_converse_answers_the_scripted_prompts(runtime, case) -> None:  # type: ignore[no-untyped-def]
    out = runtime.converse(modelId=BUILTIN_MODEL_ID, **converse_kwargs(case))
    assert out["output"]["message"] == {"role": "assistant", "content": [{"text": case.answer}]}
    assert out["stopReason"] == "end_turn"
    usage = out["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0  # one token of the prompt is always computed
    prompt = usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheWriteInputTokens"]
    assert usage["totalTokens"] == prompt + usage["outputTokens"]
    assert isinstance(out["metrics"]["latencyMs"], int)
    assert out["ResponseMetadata"]["RequestId"]


def test_converse_tool_round_trip(runtime) -> None:  # type: ignore[no-untyped-def]
    first = runtime.converse(modelId=CLAUDE, **converse_kwargs(_case("tool_call")))
    assert first["stopReason"] == "tool_use"
    [block] = first["output"]["message"]["content"]
    use = block["toolUse"]
    assert use["name"] == "get_weather" and use["input"] == {"city": "Paris"}
    assert use["toolUseId"]

    # Send the tool's result back in the conversation, as an application would.
    kwargs = converse_kwargs(_case("tool_call"))
    kwargs["messages"] += [
        {"role": "assistant", "content": [block]},
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": use["toolUseId"],
                        "content": [{"json": {"temperature": 18, "condition": "sunny"}}],
                    }
                }
            ],
        },
    ]
    second = runtime.converse(modelId=CLAUDE, **kwargs)
    assert second["stopReason"] == "end_turn"
    assert second["output"]["message"]["content"] == [{"text": ANSWERS["tool_answer"]}]


def test_converse_max_tokens_stops_early(runtime) -> None:  # type: ignore[no-untyped-def]
    kwargs = converse_kwargs(_case("count"))
    kwargs["inferenceConfig"]["maxTokens"] = 3
    out = runtime.converse(modelId=BUILTIN_MODEL_ID, **kwargs)
    assert out["stopReason"] == "max_tokens"
    assert out["usage"]["outputTokens"] == 3
    text = out["output"]["message"]["content"][0]["text"]
    assert COUNT_ANSWER.startswith(text) and len(text) < len(COUNT_ANSWER)


def test_converse_stop_sequence(runtime) -> None:  # type: ignore[no-untyped-def]
    kwargs = converse_kwargs(_case("count"))
    kwargs["inferenceConfig"]["stopSequences"] = [" five"]
    out = runtime.converse(modelId=BUILTIN_MODEL_ID, **kwargs)
    assert out["stopReason"] == "stop_sequence"
    assert out["output"]["message"]["content"] == [{"text": "one two three four"}]


def test_converse_tool_choice_forces_a_call(runtime) -> None:  # type: ignore[no-untyped-def]
    # "Hello" alone gets a greeting; toolChoice.tool makes the grammar force a call of that tool.
    kwargs = converse_kwargs(_case("hello"))
    kwargs["toolConfig"] = {**tool_config(), "toolChoice": {"tool": {"name": "get_weather"}}}
    out = runtime.converse(modelId=BUILTIN_MODEL_ID, **kwargs)
    assert out["stopReason"] == "tool_use"
    [block] = out["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "get_weather"
    assert isinstance(block["toolUse"]["input"].get("city"), str)


def _events(stream) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return list(stream["stream"])


def test_converse_stream_text_order_and_content(runtime) -> None:  # type: ignore[no-untyped-def]
    events = _events(runtime.converse_stream(modelId=BUILTIN_MODEL_ID, **converse_kwargs(_case("capital"))))
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    assert "contentBlockStart" not in kinds  # Bedrock sends none for text blocks
    assert kinds.count("contentBlockStop") == 1
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert all(d["contentBlockIndex"] == 0 for d in deltas)
    assert "".join(d["delta"]["text"] for d in deltas) == ANSWERS["capital"]
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    meta = events[-1]["metadata"]
    assert meta["usage"]["outputTokens"] > 0 and isinstance(meta["metrics"]["latencyMs"], int)


def test_converse_stream_tool_use_order(runtime) -> None:  # type: ignore[no-untyped-def]
    events = _events(runtime.converse_stream(modelId=CLAUDE, **converse_kwargs(_case("tool_call"))))
    kinds = [next(iter(e)) for e in events]
    assert kinds == [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    start = events[1]["contentBlockStart"]
    assert start["start"]["toolUse"]["name"] == "get_weather"
    fragments = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e)
    assert json.loads(fragments) == {"city": "Paris"}
    assert events[4]["messageStop"]["stopReason"] == "tool_use"


def test_converse_stream_error_after_start_is_an_exception_frame(base_url) -> None:  # type: ignore[no-untyped-def]
    from tests.api.failing import failing_server

    with failing_server() as (url, model):
        from tests.conftest import client

        rt = client("bedrock-runtime", url)
        out = rt.converse_stream(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])
        seen = []
        with pytest.raises(EventStreamError) as err:
            for event in out["stream"]:
                seen.append(event)
        assert seen and "messageStart" in seen[0]
        assert err.value.response["Error"]["Code"] == "modelStreamErrorException"
        with pytest.raises(ClientError) as err2:
            rt.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])
        assert err2.value.response["Error"]["Code"] == "ModelErrorException"
        assert err2.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424


def test_converse_output_schema_is_enforced_while_decoding(runtime) -> None:  # type: ignore[no-untyped-def]
    # The model was never trained to write this shape; the grammar makes it.
    schema = {
        "type": "object",
        "properties": {"temperature": {"type": "integer"}, "unit": {"enum": ["C", "F"]}},
        "required": ["temperature", "unit"],
    }
    out = runtime.converse(
        modelId=BUILTIN_MODEL_ID,
        messages=[{"role": "user", "content": [{"text": "Hello"}]}],
        inferenceConfig={"temperature": 0, "maxTokens": 60},
        outputConfig={
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "w"}},
            }
        },
    )
    value = json.loads(out["output"]["message"]["content"][0]["text"])
    assert isinstance(value["temperature"], int) and value["unit"] in ("C", "F")
