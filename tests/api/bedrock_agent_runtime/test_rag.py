"""RetrieveAndGenerate and RetrieveAndGenerateStream through boto3's bedrock-agent-runtime client against a real
server. A scripted model writes the answers, so citations are checked exactly: [n] markers stripped and mapped to
spans and passages, attribution by overlap when the model cites nothing; sessions carry earlier turns into a
follow-up; prompt templates, inference settings, guardrails, external documents; the stream decoded by botocore,
errors inside it included. One test generates with the built-in llama.cpp model."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from outcrop import errors
from outcrop.conversation import ChatRequest
from outcrop.models import BUILTIN_EMBEDDING_ID, BUILTIN_MODEL_ID
from tests.api.bedrock_agent_runtime.conftest import BLOCKED_IN, SCRIPTED, Env, number_of, numbered

ZEPHYR = [
    "The Zephyr 3000 cordless drill weighs 2 kilograms and has a 20 volt battery.",
    "The Zephyr 3000 costs 199 dollars and comes with a two year warranty.",
]
GARDEN = "Tomato plants need six hours of sunlight a day and regular watering."


@pytest.fixture(scope="module")
def kb(env: Env) -> str:
    kb_id = env.knowledge_base("rag-tests")
    env.add(kb_id, "zephyr", ZEPHYR, genre="manual")
    env.add(kb_id, "garden", [GARDEN], genre="guide")
    env.add(kb_id, "policy", ["Returns are accepted within 30 days with the original receipt."], genre="policy")
    return kb_id


@pytest.fixture(autouse=True)
def _reset(env: Env) -> None:
    env.engine.script = None
    env.engine.requests.clear()


def _config(kb: str, model: str = SCRIPTED, **generation: Any) -> dict[str, Any]:
    kbc: dict[str, Any] = {"knowledgeBaseId": kb, "modelArn": model,
                           "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 3}}}  # fmt: skip
    if generation:
        kbc["generationConfiguration"] = generation
    return {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": kbc}


def _ask(env: Env, kb: str, text: str, **kw: Any) -> dict[str, Any]:
    config = kw.pop("config", None) or _config(kb)
    return env.runtime.retrieve_and_generate(  # type: ignore[no-any-return]
        input={"text": text}, retrieveAndGenerateConfiguration=config, **kw
    )


def _span_text(out: dict[str, Any], citation: dict[str, Any]) -> str:
    span = citation["generatedResponsePart"]["textResponsePart"]["span"]
    return str(out["output"]["text"][span["start"] : span["end"] + 1])


def _cited(citation: dict[str, Any]) -> list[str]:
    return [r["content"]["text"] for r in citation["retrievedReferences"]]


def test_markers_become_citations(env: Env, kb: str) -> None:
    def script(r: ChatRequest) -> str:
        w, p = number_of(r, "weighs"), number_of(r, "costs")
        return f"The Zephyr 3000 weighs 2 kilograms [{w}]. It costs 199 dollars [{p}][{w}]. Enjoy it."

    env.engine.script = script
    out = _ask(env, kb, "How heavy is the Zephyr 3000 and what does it cost?")
    assert out["output"]["text"] == "The Zephyr 3000 weighs 2 kilograms. It costs 199 dollars. Enjoy it."
    assert len(out["sessionId"]) >= 2 and "guardrailAction" not in out
    parts = out["citations"]
    assert [p["generatedResponsePart"]["textResponsePart"]["text"] for p in parts] == [
        "The Zephyr 3000 weighs 2 kilograms.", "It costs 199 dollars.", "Enjoy it."]  # fmt: skip
    assert all(_span_text(out, p) == p["generatedResponsePart"]["textResponsePart"]["text"] for p in parts)
    assert parts[0]["generatedResponsePart"]["textResponsePart"]["span"] == {"start": 0, "end": 34}
    assert _cited(parts[0]) == [ZEPHYR[0]] and _cited(parts[1]) == [ZEPHYR[1], ZEPHYR[0]] and _cited(parts[2]) == []
    ref = parts[0]["retrievedReferences"][0]
    assert ref["location"] == {"type": "S3", "s3Location": {"uri": "s3://docs/zephyr"}}
    assert ref["metadata"]["x-amz-bedrock-kb-chunk-id"] == "zephyr-0" and ref["metadata"]["genre"] == "manual"
    assert ref["content"]["type"] == "TEXT" and "score" not in ref
    # what the model was given: the default template, the numbered passages, the question; citing asked for
    prompt = env.engine.requests[0].messages[-1].text
    assert "square brackets" in prompt and prompt.rstrip().endswith("what does it cost?")
    given = numbered(env.engine.requests[0]).values()
    assert all(any(t.startswith(z) for t in given) for z in ZEPHYR)


def test_uncited_sentences_are_attributed_by_overlap(env: Env, kb: str) -> None:
    env.engine.script = lambda r: ("Tomato plants want six hours of sunlight every day. They also need regular "
                                   "watering. The Zephyr drill costs 199 dollars. I like turtles.")  # fmt: skip
    out = _ask(env, kb, "How much sun do tomatoes need?")
    parts = [(p["generatedResponsePart"]["textResponsePart"]["text"], _cited(p)) for p in out["citations"]]
    assert parts == [
        ("Tomato plants want six hours of sunlight every day. They also need regular watering.", [GARDEN]),
        ("The Zephyr drill costs 199 dollars.", [ZEPHYR[1]]),
        ("I like turtles.", []),
    ]


def test_session_carries_the_conversation(env: Env, kb: str) -> None:
    env.engine.script = lambda r: f"It weighs 2 kilograms [{number_of(r, 'weighs')}]."
    first = _ask(env, kb, "How heavy is the Zephyr 3000 drill?")
    session = first["sessionId"]
    env.engine.script = lambda r: f"It costs 199 dollars [{number_of(r, 'costs')}]."
    second = _ask(env, kb, "What about its price?", sessionId=session)
    assert second["sessionId"] == session and second["output"]["text"] == "It costs 199 dollars."
    assert _cited(second["citations"][0]) == [ZEPHYR[1]]
    follow_up = env.engine.requests[-1]
    assert [m.role for m in follow_up.messages] == ["user", "assistant", "user"]
    assert follow_up.messages[0].text == "How heavy is the Zephyr 3000 drill?"
    assert follow_up.messages[1].text == "It weighs 2 kilograms."  # the answer without its markers
    other = _ask(env, kb, "What about its price?")  # no session: a new one, no history
    assert other["sessionId"] != session and len(env.engine.requests[-1].messages) == 1
    with pytest.raises(ClientError) as err:
        _ask(env, kb, "And its battery?", sessionId="no-such-session")
    assert err.value.response["Error"]["Code"] == "ValidationException" and "not valid" in str(err.value)


def test_prompt_template_and_inference_settings(env: Env, kb: str) -> None:
    template = "Facts:\n$search_results$\n\nQ: $query$\nA short answer:"
    env.engine.script = lambda r: "Two kilograms and more words here STOP never shown"
    out = _ask(env, kb, "Zephyr weight?", config=_config(
        kb, promptTemplate={"textPromptTemplate": template},
        inferenceConfig={"textInferenceConfig": {"maxTokens": 40, "temperature": 0.2, "topP": 0.9,
                                                 "stopSequences": ["STOP"]}},
        additionalModelRequestFields={"top_k": 5, "seed": 7}))  # fmt: skip
    request = env.engine.requests[-1]
    prompt = request.messages[-1].text
    assert prompt.startswith("Facts:\n[1] ") and prompt.endswith("Q: Zephyr weight?\nA short answer:")
    assert "square brackets" not in prompt  # no $output_format_instructions$: no citing asked for
    s = request.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.stop, s.top_k, s.seed) == (40, 0.2, 0.9, ("STOP",), 5, 7)
    assert out["output"]["text"] == "Two kilograms and more words here"
    for bad, needle in (({"promptTemplate": {"textPromptTemplate": "No results here: $query$"}}, "$search_results$"),
                        ({"additionalModelRequestFields": {"mirostat": 2}}, "mirostat")):  # fmt: skip
        with pytest.raises(ClientError) as err:
            _ask(env, kb, "Zephyr weight?", config=_config(kb, **bad))
        assert err.value.response["Error"]["Code"] == "ValidationException" and needle in str(err.value)


def test_guardrail_intervenes(env: Env, kb: str) -> None:
    guard: dict[str, Any] = {"guardrailConfiguration": {"guardrailId": env.guardrails["words"],
                                                        "guardrailVersion": "DRAFT"}}  # fmt: skip
    env.engine.script = lambda r: f"It weighs 2 kilograms [{number_of(r, 'weighs')}]."
    blocked = _ask(env, kb, "Does the frobnicator fit the Zephyr?", config=_config(kb, **guard))
    assert blocked["guardrailAction"] == "INTERVENED" and blocked["output"]["text"] == BLOCKED_IN
    assert blocked["citations"] == [] and env.engine.requests == []  # the model never saw it
    fine = _ask(env, kb, "How heavy is the Zephyr?", config=_config(kb, **guard))
    assert fine["guardrailAction"] == "NONE" and fine["output"]["text"] == "It weighs 2 kilograms."
    stream = env.runtime.retrieve_and_generate_stream(input={"text": "Does the frobnicator fit?"},
                                                      retrieveAndGenerateConfiguration=_config(kb, **guard))  # fmt: skip
    events = list(stream["stream"])
    assert events[-1] == {"guardrail": {"action": "INTERVENED"}}
    assert "".join(e["output"]["text"] for e in events if "output" in e) == BLOCKED_IN


def test_external_document(env: Env) -> None:
    doc = b"# Lighthouse\n\nThe Fastnet lighthouse is 54 metres tall.\n\nIt was finished in 1904."
    env.engine.script = lambda r: f"It is 54 metres tall [{number_of(r, '54 metres')}]."
    config = {"type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {"modelArn": SCRIPTED, "sources": [
        {"sourceType": "BYTE_CONTENT", "byteContent": {"identifier": "lighthouse.md", "contentType": "text/markdown",
                                                       "data": doc}}]}}  # fmt: skip
    out = env.runtime.retrieve_and_generate(input={"text": "How tall is the Fastnet lighthouse?"},
                                            retrieveAndGenerateConfiguration=config)  # fmt: skip
    assert out["output"]["text"] == "It is 54 metres tall."
    ref = out["citations"][0]["retrievedReferences"][0]
    assert "54 metres" in ref["content"]["text"]
    assert ref["location"] == {"type": "CUSTOM", "customDocumentLocation": {"id": "lighthouse.md"}}
    s3 = {"type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {"modelArn": SCRIPTED, "sources": [
        {"sourceType": "S3", "s3Location": {"uri": "s3://docs-bucket/lighthouse.md"}}]}}  # fmt: skip
    with pytest.raises(ClientError) as err:
        env.runtime.retrieve_and_generate(input={"text": "How tall?"}, retrieveAndGenerateConfiguration=s3)
    assert err.value.response["Error"]["Code"] == "ValidationException" and "byteContent" in str(err.value)


def test_bad_requests(env: Env, kb: str) -> None:
    cases = [
        (_config("NOSUCHKB01"), "ResourceNotFoundException"),
        (_config(kb, model="arn:aws:bedrock:us-east-1::foundation-model/nobody.nothing-v1:0"),
         "ResourceNotFoundException"),
        (_config(kb, model=BUILTIN_EMBEDDING_ID), "ValidationException"),
        ({**_config(kb), "knowledgeBaseConfiguration": {**_config(kb)["knowledgeBaseConfiguration"],
          "orchestrationConfiguration": {"queryTransformationConfiguration": {"type": "QUERY_DECOMPOSITION"}}}},
         "ValidationException"),
        ({"type": "KNOWLEDGE_BASE"}, "ValidationException"),
    ]  # fmt: skip
    for config, code in cases:
        with pytest.raises(ClientError) as err:
            _ask(env, kb, "How heavy?", config=config)
        assert err.value.response["Error"]["Code"] == code, (config, err.value)


def test_stream_decoded_by_botocore(env: Env, kb: str) -> None:
    def script(r: ChatRequest) -> str:
        return (
            f"The Zephyr weighs 2 kilograms [{number_of(r, 'weighs')}]. It costs 199 dollars [{number_of(r, 'costs')}]."
        )

    env.engine.script = script
    out = env.runtime.retrieve_and_generate_stream(input={"text": "Weight and price of the Zephyr?"},
                                                   retrieveAndGenerateConfiguration=_config(kb))  # fmt: skip
    session = out["sessionId"]
    events = list(out["stream"])
    kinds = [next(iter(e)) for e in events]
    assert set(kinds) == {"output", "citation"} and kinds[0] == "output"
    text = "".join(e["output"]["text"] for e in events if "output" in e)
    assert text == "The Zephyr weighs 2 kilograms. It costs 199 dollars."
    citations = [e["citation"] for e in events if "citation" in e]
    assert [_cited(c) for c in citations] == [[ZEPHYR[0]], [ZEPHYR[1]]]
    for c in citations:
        span = c["generatedResponsePart"]["textResponsePart"]["span"]
        assert text[span["start"] : span["end"] + 1] == c["generatedResponsePart"]["textResponsePart"]["text"]
    # the first citation comes before the text after it: it is sent as soon as its sentence is complete
    assert kinds.index("citation") < len(kinds) - 2
    env.engine.script = lambda r: f"It costs 199 dollars [{number_of(r, 'costs')}]."
    again = env.runtime.retrieve_and_generate_stream(input={"text": "And its price?"}, sessionId=session,
                                                     retrieveAndGenerateConfiguration=_config(kb))  # fmt: skip
    assert again["sessionId"] == session and len(list(again["stream"])) >= 2
    assert [m.role for m in env.engine.requests[-1].messages] == ["user", "assistant", "user"]


def test_stream_error_after_the_first_byte(env: Env, kb: str) -> None:
    def script(r: ChatRequest) -> str:
        raise errors.ModelFailure("the model fell over")

    env.engine.script = script
    out = env.runtime.retrieve_and_generate_stream(input={"text": "How heavy is the Zephyr?"},
                                                   retrieveAndGenerateConfiguration=_config(kb))  # fmt: skip
    with pytest.raises(EventStreamError) as err:
        list(out["stream"])
    assert err.value.response["Error"]["Code"] == "dependencyFailedException"
    assert "fell over" in err.value.response["Error"]["Message"]


def test_real_generation_with_the_built_in_model(env: Env, kb: str) -> None:
    out = _ask(env, kb, "How heavy is the Zephyr 3000?", config=_config(
        kb, model=BUILTIN_MODEL_ID, inferenceConfig={"textInferenceConfig": {"maxTokens": 48}}))  # fmt: skip
    text = out["output"]["text"]
    assert isinstance(text, str) and out["sessionId"]
    for c in out["citations"]:
        part = c["generatedResponsePart"]["textResponsePart"]
        assert _span_text(out, c) == part["text"] and part["text"].strip()
        for ref in c["retrievedReferences"]:
            assert ref["content"]["text"] in (*ZEPHYR, GARDEN) or "Returns" in ref["content"]["text"]


def test_byte_content_blob_is_base64_on_the_wire(env: Env) -> None:
    """botocore sends the blob base64-encoded; a body sent by hand with bad base64 is a ValidationException."""
    import httpx

    body: dict[str, Any] = {"input": {"text": "How tall?"}, "retrieveAndGenerateConfiguration": {
        "type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {"modelArn": SCRIPTED, "sources": [
            {"sourceType": "BYTE_CONTENT", "byteContent": {"identifier": "a.txt", "contentType": "text/plain",
                                                           "data": "not base64!!"}}]}}}  # fmt: skip
    r = httpx.post(f"{env.url}/retrieveAndGenerate", json=body)
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationException" and "base64" in r.text
    body["retrieveAndGenerateConfiguration"]["externalSourcesConfiguration"]["sources"][0]["byteContent"]["data"] = (
        base64.b64encode(b"The tower is 30 metres tall.").decode()
    )
    env.engine.script = lambda r: "It is 30 metres tall."
    r = httpx.post(f"{env.url}/retrieveAndGenerate", json=body)
    assert r.status_code == 200 and r.json()["output"]["text"] == "It is 30 metres tall."
    assert r.json()["citations"][0]["retrievedReferences"][0]["content"]["text"] == "The tower is 30 metres tall."
