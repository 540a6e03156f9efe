"""Retrieve through boto3's bedrock-agent-runtime client against a real server: the result shape Bedrock gives
(content, S3 location, Bedrock's metadata keys beside the document's attributes, score), numberOfResults and
nextToken pages, SEMANTIC against HYBRID, metadata filters, reranking with an embedding model, the guardrail,
and the errors (unknown knowledge base, a bad filter, what this server refuses)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from outcrop.models import BUILTIN_EMBEDDING_ID
from tests.api.bedrock_agent_runtime.conftest import DATA_SOURCE, Env

ZEPHYR = [
    "The Zephyr 3000 cordless drill weighs 2 kilograms and has a 20 volt battery.",
    "The Zephyr 3000 costs 199 dollars and comes with a two year warranty.",
]
GROMMET = "Grommet part 5521 seals the garden hose reel against leaks."


@pytest.fixture(scope="module")
def kb(env: Env) -> str:
    kb_id = env.knowledge_base("retrieve-tests")
    env.add(kb_id, "zephyr", ZEPHYR, genre="manual", year=2023, tags=("tools", "power"))
    env.add(kb_id, "garden", ["Tomato plants need six hours of sunlight a day and regular watering."], genre="guide",
            year=2021)  # fmt: skip
    env.add(kb_id, "codes", ["Error code QX-7781 means the battery contacts are dirty; clean them with a dry cloth."],
            genre="manual", year=2022)  # fmt: skip
    env.add(kb_id, "grommet", [GROMMET], genre="parts", year=2020)
    env.add(kb_id, "music", ["The xylophone recital starts at noon in the east hall."], genre="event", year=2019)
    for i in range(8):
        env.add(kb_id, f"note{i}", [f"Note {i}: the office kitchen is cleaned on weekday {i} by the facilities team."],
                genre="note", year=2010 + i)  # fmt: skip
    return kb_id


def _retrieve(env: Env, kb: str, text: str, **vector: Any) -> dict[str, Any]:
    extra = {k: vector.pop(k) for k in ("nextToken", "guardrailConfiguration") if k in vector}
    config = {"vectorSearchConfiguration": vector} if vector else {}
    return env.runtime.retrieve(  # type: ignore[no-any-return]
        knowledgeBaseId=kb, retrievalQuery={"text": text}, **({"retrievalConfiguration": config} if config else {}),
        **extra,
    )  # fmt: skip


def _ids(out: dict[str, Any]) -> list[str]:
    return [r["metadata"]["x-amz-bedrock-kb-chunk-id"] for r in out["retrievalResults"]]


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_retrieve_finds_the_passage_in_bedrocks_shape(env: Env, kb: str) -> None:
    out = _retrieve(env, kb, "How heavy is the Zephyr drill?")
    assert len(out["retrievalResults"]) == 5  # Bedrock's default numberOfResults
    top = out["retrievalResults"][0]
    assert top["content"] == {"type": "TEXT", "text": ZEPHYR[0]}
    assert top["location"] == {"type": "S3", "s3Location": {"uri": "s3://docs/zephyr"}}
    assert top["metadata"] == {"genre": "manual", "year": 2023, "tags": ["tools", "power"],
                               "x-amz-bedrock-kb-source-uri": "s3://docs/zephyr",
                               "x-amz-bedrock-kb-data-source-id": DATA_SOURCE,
                               "x-amz-bedrock-kb-chunk-id": "zephyr-0"}  # fmt: skip
    scores = [r["score"] for r in out["retrievalResults"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert "guardrailAction" not in out and "nextToken" in out


def test_pages_follow_one_another(env: Env, kb: str) -> None:
    whole = _ids(_retrieve(env, kb, "office kitchen cleaning", numberOfResults=20))
    assert len(whole) == 14  # every chunk, each once
    seen: list[str] = []
    token = None
    while True:
        page = _retrieve(
            env, kb, "office kitchen cleaning", numberOfResults=5, **({"nextToken": token} if token else {})
        )
        seen += _ids(page)
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == whole
    first = _retrieve(env, kb, "office kitchen cleaning", numberOfResults=5)
    with pytest.raises(ClientError) as err:  # the token of another request
        _retrieve(env, kb, "something else", numberOfResults=5, nextToken=first["nextToken"])
    assert _code(err) == "ValidationException" and "another Retrieve request" in str(err.value)


def test_hybrid_adds_keyword_matches_semantic_misses(env: Env, kb: str) -> None:
    # Only the recital shares a word with the query; by meaning the query is about the kitchen notes. (With 4
    # results each side of HYBRID brings 16 candidates: every chunk, so the recital has both ranks.)
    query = "janitors tidying cafeteria xylophone"
    semantic = _ids(_retrieve(env, kb, query, numberOfResults=4, overrideSearchType="SEMANTIC"))
    hybrid = _ids(_retrieve(env, kb, query, numberOfResults=4, overrideSearchType="HYBRID"))
    assert "music-0" not in semantic and all(i.startswith("note") for i in semantic), semantic
    assert hybrid[0] == "music-0" and hybrid[1:] == semantic[:3], hybrid
    default = _ids(_retrieve(env, kb, query, numberOfResults=4))
    assert default == semantic  # SEMANTIC unless overridden


@pytest.mark.parametrize(
    ("flt", "expect"),
    [
        ({"equals": {"key": "genre", "value": "manual"}}, {"zephyr-0", "zephyr-1", "codes-0"}),
        ({"andAll": [{"equals": {"key": "genre", "value": "manual"}},
                     {"greaterThan": {"key": "year", "value": 2022}}]}, {"zephyr-0", "zephyr-1"}),
        ({"orAll": [{"in": {"key": "genre", "value": ["guide", "parts"]}},
                    {"listContains": {"key": "tags", "value": "power"}}]},
         {"garden-0", "grommet-0", "zephyr-0", "zephyr-1"}),
        ({"startsWith": {"key": "x-amz-bedrock-kb-source-uri", "value": "s3://docs/note1"}}, {"note1-0"}),
        ({"lessThan": {"key": "year", "value": 2011}}, {"note0-0"}),
    ],
)  # fmt: skip
def test_filters(env: Env, kb: str, flt: dict[str, Any], expect: set[str]) -> None:
    for search in ("SEMANTIC", "HYBRID"):
        found = set(_ids(_retrieve(env, kb, "drill", numberOfResults=20, overrideSearchType=search, filter=flt)))
        assert found == expect, (search, found)


def test_bad_filter_is_a_validation_error(env: Env, kb: str) -> None:
    with pytest.raises(ClientError) as err:
        _retrieve(env, kb, "drill", filter={"in": {"key": "genre", "value": "manual"}})
    assert _code(err) == "ValidationException" and "filter.in.value" in str(err.value)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_knowledge_base(env: Env) -> None:
    with pytest.raises(ClientError) as err:
        _retrieve(env, "NOSUCHKB01", "drill")
    assert _code(err) == "ResourceNotFoundException" and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert isinstance(err.value, env.runtime.exceptions.ResourceNotFoundException)


def test_rerank_with_an_embedding_model(env: Env, kb: str) -> None:
    rerank = {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
        "numberOfRerankedResults": 2,
        "modelConfiguration": {"modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{BUILTIN_EMBEDDING_ID}"}}}  # fmt: skip
    out = _retrieve(env, kb, "What does the Zephyr cost?", numberOfResults=6, overrideSearchType="HYBRID",
                    rerankingConfiguration=rerank)  # fmt: skip
    assert _ids(out) == ["zephyr-1", "zephyr-0"]
    scores = [r["score"] for r in out["retrievalResults"]]
    assert scores[0] > scores[1] and scores[0] < 1  # cosine scores, not the fused ranks
    other = {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
        "modelConfiguration": {"modelArn": "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"}}}  # fmt: skip
    with pytest.raises(ClientError) as err:
        _retrieve(env, kb, "cost", rerankingConfiguration=other)
    assert _code(err) == "ValidationException" and BUILTIN_EMBEDDING_ID in str(err.value)


def test_refused_features_say_so(env: Env, kb: str) -> None:
    implicit = {"metadataAttributes": [{"key": "genre", "type": "STRING", "description": "kind of document"}],
                "modelArn": "test.scripted-v1:0"}  # fmt: skip
    with pytest.raises(ClientError) as err:
        _retrieve(env, kb, "drill", implicitFilterConfiguration=implicit)
    assert _code(err) == "ValidationException" and "implicitFilterConfiguration" in str(err.value)
    with pytest.raises(ClientError) as err:
        env.runtime.retrieve(knowledgeBaseId=kb, retrievalQuery={"type": "IMAGE", "image": {
            "format": "png", "inlineContent": b"\x89PNG"}})  # fmt: skip
    assert _code(err) == "ValidationException" and "text" in str(err.value)


def test_guardrail_checks_query_and_passages(env: Env, kb: str) -> None:
    guard = {"guardrailId": env.guardrails["words"], "guardrailVersion": "DRAFT"}
    blocked = _retrieve(env, kb, "my frobnicator drill", guardrailConfiguration=guard)
    assert blocked["guardrailAction"] == "INTERVENED" and blocked["retrievalResults"] == []
    fine = _retrieve(env, kb, "Zephyr drill weight", guardrailConfiguration=guard)
    assert fine["guardrailAction"] == "NONE" and _ids(fine)[0] == "zephyr-0"


def test_managed_search_is_hybrid_and_reranks_with_the_knowledge_bases_model(env: Env, kb: str) -> None:
    query = "janitors tidying cafeteria xylophone"
    hybrid = _ids(_retrieve(env, kb, query, numberOfResults=4, overrideSearchType="HYBRID"))
    config: dict[str, Any] = {"managedSearchConfiguration": {"numberOfResults": 4}}
    managed = env.runtime.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": query}, retrievalConfiguration=config)
    assert _ids(managed) == hybrid
    config = {"managedSearchConfiguration": {"numberOfResults": 4, "rerankingModelType": "MANAGED"}}
    reranked = env.runtime.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": query}, retrievalConfiguration=config)
    assert sorted(_ids(reranked)) == sorted(hybrid) and _ids(reranked)[0] != "music-0"  # by meaning: the notes


def test_user_context_is_refused(env: Env, kb: str) -> None:
    with pytest.raises(ClientError) as err:
        env.runtime.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": "drill"}, userContext={"userId": "ada"})
    assert _code(err) == "ValidationException" and "userContext" in str(err.value)
