"""Every route of all three dialects fuzzed with schemathesis from the documents the server publishes (see
tests/fuzzing.py), on the whole server as `outcrop serve` assembles it — keys, SQLite store, guardrails, usage,
invocation logs — with an administrator's key, on a real uvicorn on 127.0.0.1. A small budget here; the longer
run is benchmarks/fuzz.py. The models are the echo engine (fast, so the budget goes to the HTTP layer) and the
built-in llama.cpp model for the routes that only read the catalogue."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from outcrop.cli import assemble
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from tests.conftest import serve_app
from tests.fuzzing import fuzz

ECHO = "test.echo-v1:0"
EXAMPLES = int(os.environ.get("OUTCROP_FUZZ_EXAMPLES", "8"))  # per operation and mode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, env: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("fuzz")
    env.setenv("OUTCROP_HOME", str(home))
    settings = Settings(config_path=home / "config.toml", auth="keys", builtin_embedding_model=False,
                        models=(ModelSpec(id=ECHO, engine="echo", n_ctx=4096, max_queue=64),))  # fmt: skip
    app, keyring = assemble(settings, "keys", {ECHO: EchoEngine(context_length=4096, max_queue=64)})
    keyring.ensure_principal("fuzzer", admin=True)
    _, token = keyring.create_api_key("fuzzer")
    with serve_app(app) as url:
        yield url, token


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_route_fuzzed_answers_below_500_in_its_dialect(served: tuple[str, str]) -> None:
    url, token = served
    pins = {"modelId": [ECHO], "model": [ECHO], "modelIdentifier": [ECHO]}
    tally = fuzz(url, pins, EXAMPLES, headers={"Authorization": f"Bearer {token}"})
    print(f"\n{sum(tally.cases.values())} cases in {tally.seconds:.1f} s: {dict(tally.cases)}; "
          f"statuses {dict(tally.statuses)}")  # fmt: skip
    assert set(tally.cases) == {"bedrock", "openai", "anthropic", "outcrop"}
    assert sum(tally.cases.values()) > 200
    problems = [f"{f.api} {f.operation} [{f.mode}]: {f.problem}\n    {f.request}" for f in tally.findings]
    assert not problems, "\n".join(problems[:20])


def test_the_documents_name_every_route(served: tuple[str, str]) -> None:
    import httpx

    url, _ = served
    a = httpx.get(f"{url}/openapi.json").json()
    b = httpx.get(f"{url}/openapi/bedrock.json").json()
    assert {"/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/outcrop/v1/keys"} <= set(a["paths"])
    assert a["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    ops = {op["operationId"] for path in b["paths"].values() for op in path.values()}
    assert {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream", "ApplyGuardrail",
            "CreateGuardrail", "ListGuardrails", "GetFoundationModel", "CountTokens"} <= ops  # fmt: skip
