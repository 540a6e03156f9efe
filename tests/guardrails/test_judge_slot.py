"""A constitution whose judge is the very model it guards, on a model with one slot: the judge runs on the slot
kept for calls made on behalf of a request (engines.base.Admission), so the guarded call never waits on itself.
Before that slot existed this hung forever: the judge queued behind the request holding the only slot. Real
llama.cpp model, real server, the whole stack as `outcrop serve` builds it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from outcrop.cli import assemble
from outcrop.config import ModelSpec, Settings
from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID
from tests.conftest import serve_app

QUOTED = BUILTIN_MODEL_ID.replace(":", "%3A")


def test_a_judge_on_the_guarded_single_slot_model_does_not_deadlock(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("OUTCROP_HOME", str(tmp_path))
    spec = ModelSpec(id=BUILTIN_MODEL_ID, path=str(BUILTIN_GGUF), n_ctx=4096, parallel=1)
    settings = Settings(config_path=tmp_path / "config.toml", builtin_embedding_model=False, models=(spec,))
    app, _ = assemble(settings, "local")
    with serve_app(app) as url:
        definition = {
            "name": "self-judged",
            "blockedInputMessaging": "Blocked input.",
            "blockedOutputsMessaging": "Blocked output.",
            "constitution": {
                "judgeModel": BUILTIN_MODEL_ID,
                "principles": ["Never mention pineapples."],
                "checkInput": True,
                "checkOutput": True,
            },
        }
        made = httpx.post(f"{url}/guardrails", json=definition, timeout=30)
        assert made.status_code in (200, 202), made.text
        body = {
            "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
            "inferenceConfig": {"maxTokens": 16},
            "guardrailConfig": {
                "guardrailIdentifier": made.json()["guardrailId"],
                "guardrailVersion": "DRAFT",
                "trace": "enabled",
            },
        }
        # a generous bound: a hang is what this guards against, not a speed
        r = httpx.post(f"{url}/model/{QUOTED}/converse", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["stopReason"] in ("end_turn", "max_tokens", "guardrail_intervened")
        streamed = httpx.post(f"{url}/model/{QUOTED}/converse-stream", json=body, timeout=120)
        assert streamed.status_code == 200
        usage = httpx.get(f"{url}/outcrop/v1/usage", params={"groupBy": "principal"}, timeout=30).json()
        # the two guarded calls and the judge's four (input and output of each): the judge really ran
        assert usage["usage"][0]["requests"] == 6, usage
