"""One guardrail's rules over texts (outcrop.guardrails.assess): policy switches, actions, the constitution's
block and critique-then-revise paths (with a scripted judge), and the judge wired to the real tiny model."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from outcrop.conversation import ChatRequest, ChatResult, StopReason, Text, Usage
from outcrop.guardrails import constitution
from outcrop.guardrails.assess import Checker, Compiled
from outcrop.guardrails.policy import compile_rules
from outcrop.guardrails.store import Guardrail

NOW = datetime.now(UTC)


def _compiled(config: dict[str, Any], rules: dict[str, Any] | None = None) -> Compiled:
    config = {"name": "t", "blockedInputMessaging": "in-blocked", "blockedOutputsMessaging": "out-blocked", **config}
    g = Guardrail("gid", "DRAFT", "t", None, config, NOW, NOW)
    c = constitution.parse(rules) if rules else None
    return Compiled(g, compile_rules(config, "INPUT"), compile_rules(config, "OUTPUT"), c)


async def _no_embedding(texts: list[str]) -> np.ndarray:
    raise AssertionError("word and regex rules must not need the embedding model")


def _judge(*replies: dict[str, Any]) -> tuple[list[ChatRequest], Any]:
    seen: list[ChatRequest] = []
    queue = list(replies)

    async def complete(request: ChatRequest) -> ChatResult:
        seen.append(request)
        return ChatResult((Text(json.dumps(queue.pop(0))),), StopReason.END_TURN, Usage(10, 10))

    return seen, complete


RULES = {"judgeModel": "judge.model", "principles": ["Never mention pineapples."], "reviseOutput": True}


def test_action_none_reports_but_lets_through() -> None:
    compiled = _compiled({"wordPolicyConfig": {"wordsConfig": [{"text": "gizmo", "inputAction": "NONE"}]}})
    out = asyncio.run(Checker(_no_embedding).assess(compiled, "INPUT", ["a gizmo"]))
    assert not out.blocked and not out.intervened and out.action == "NONE"
    assert out.assessment["wordPolicy"]["customWords"] == [{"match": "gizmo", "action": "NONE", "detected": True}]
    out = asyncio.run(Checker(_no_embedding).assess(compiled, "OUTPUT", ["a gizmo"]))
    assert out.blocked and out.message == "out-blocked"


def test_disabled_direction_is_not_evaluated() -> None:
    compiled = _compiled({"wordPolicyConfig": {"wordsConfig": [{"text": "gizmo", "outputEnabled": False}]}})
    out = asyncio.run(Checker(_no_embedding).assess(compiled, "OUTPUT", ["a gizmo"], scope="FULL"))
    assert not out.blocked and "wordPolicy" not in out.assessment and out.usage["wordPolicyUnits"] == 0


def test_overlapping_regexes_mask_once() -> None:
    compiled = _compiled({"sensitiveInformationPolicyConfig": {"regexesConfig": [
        {"name": "order", "pattern": r"ORD-\d+", "action": "ANONYMIZE"},
        {"name": "digits", "pattern": r"\d{3}", "action": "ANONYMIZE"},
    ]}})  # fmt: skip
    out = asyncio.run(Checker(_no_embedding).assess(compiled, "OUTPUT", ["see ORD-12345 and 678"]))
    assert out.texts == ("see {order} and {digits}",) and out.intervened and not out.blocked


def test_constitution_blocks_input_and_cites_the_rule() -> None:
    seen, complete = _judge({"verdict": "VIOLATION", "rule": "P1", "reason": "It mentions pineapples."})
    checker = Checker(_no_embedding, complete)
    out = asyncio.run(checker.assess(_compiled({}, RULES), "INPUT", ["Tell me about pineapples"]))
    assert out.blocked and out.message == "in-blocked"
    entry = out.assessment["constitutionPolicy"]
    assert entry["ruleId"] == "P1" and entry["rule"] == "Never mention pineapples." and entry["action"] == "BLOCKED"
    assert "P1" in (out.reason or "")
    assert seen[0].model == "judge.model" and "Tell me about pineapples" in seen[0].messages[0].text


def test_constitution_revises_output_instead_of_blocking() -> None:
    _, complete = _judge(
        {"verdict": "VIOLATION", "rule": "P1", "reason": "pineapples"},
        {"critique": "It names a forbidden fruit.", "revision": "Here is a fruit salad with apples."},
    )
    out = asyncio.run(Checker(_no_embedding, complete).assess(_compiled({}, RULES), "OUTPUT", ["Pineapple salad!"]))
    assert not out.blocked and out.intervened
    assert out.texts == ("Here is a fruit salad with apples.",)
    assert out.assessment["constitutionPolicy"]["action"] == "REVISED"


def test_constitution_allow_changes_nothing_and_cheap_rules_run_first() -> None:
    seen, complete = _judge({"verdict": "ALLOW", "rule": "none", "reason": "fine"})
    config = {"wordPolicyConfig": {"wordsConfig": [{"text": "gizmo"}]}}
    checker = Checker(_no_embedding, complete)
    out = asyncio.run(checker.assess(_compiled(config, RULES), "OUTPUT", ["hello"]))
    assert not out.intervened and "constitutionPolicy" not in out.assessment
    blocked = asyncio.run(checker.assess(_compiled(config, RULES), "OUTPUT", ["a gizmo"]))
    assert blocked.blocked and len(seen) == 1  # the word rule blocked: no judge call


@pytest.mark.parametrize("source", ["INPUT", "OUTPUT"])
def test_judge_on_the_real_tiny_model(source: str, tmp_path: Path) -> None:
    """The judge path wired to llama.cpp: the grammar makes the tiny model's verdict parse (its judgement
    itself means nothing); what matters is that a verdict and a cited rule reach the assessment."""
    from outcrop.config import Settings
    from outcrop.guardrails.runtime import registry_embed
    from outcrop.inference import Inference
    from outcrop.models import BUILTIN_MODEL_ID
    from outcrop.registry import Registry

    async def run() -> Any:
        registry = Registry(Settings(config_path=tmp_path / "c.toml", builtin_embedding_model=False))
        inference = Inference(registry)
        from outcrop.auth.principal import LOCAL

        async def complete(request: ChatRequest) -> ChatResult:
            return await inference.complete(request, LOCAL, guard=False)

        rules = {"judgeModel": BUILTIN_MODEL_ID, "useDefault": True}
        try:
            checker = Checker(registry_embed(registry), complete)
            return await checker.assess(_compiled({}, rules), source, ["How do I kill a zombie process?"], scope="FULL")
        finally:
            await registry.close()

    out = asyncio.run(run())
    entry = out.assessment["constitutionPolicy"]
    assert entry["judgeModel"] == BUILTIN_MODEL_ID and entry["verdict"] in ("ALLOW", "VIOLATION")
    assert "not valid JSON" not in entry["reason"] and "could not be read" not in entry["reason"]
    assert out.blocked == (entry["verdict"] == "VIOLATION")


@pytest.mark.parametrize("tuned", [True, False], ids=["adapters", "plain"])
def test_which_encoder_the_content_filters_read(tuned: bool) -> None:
    """A STANDARD classifier trained on MiniLM + adapters ("+lora") reads the tuned encoder, and denied
    topics the plain one; a classifier trained on plain MiniLM shares one call with the topics. CLASSIC uses
    neither."""
    from outcrop.guardrails.content import ContentClassifier

    calls: dict[str, list[list[str]]] = {"plain": [], "tuned": []}

    def recorder(name: str) -> Any:
        async def embed(texts: list[str]) -> np.ndarray:
            calls[name].append(list(texts))
            v = np.zeros((len(texts), 384), np.float32)
            v[:, 0] = 1.0
            return v

        return embed

    config = {
        "contentPolicyConfig": {"filtersConfig": [{"type": "HATE", "inputStrength": "HIGH", "outputStrength": "HIGH"}]},
        "topicPolicyConfig": {"topicsConfig": [{"name": "Cars", "definition": "Talk about cars.", "type": "DENY"}]},
    }
    checker = Checker(recorder("plain"), content=recorder("tuned"))
    classifier = ContentClassifier.load()
    classifier.embedding_model = "all-MiniLM-L6-v2" + ("+lora" if tuned else "")
    checker._classifiers["STANDARD"] = classifier
    asyncio.run(checker.assess(_compiled(config), "INPUT", ["hello there"]))
    if tuned:
        assert calls["tuned"] == [["hello there"]]
        assert ["hello there"] in calls["plain"]  # the topics' windows, on the plain model
    else:
        assert calls["tuned"] == []
        assert sum(c.count("hello there") for c in calls["plain"]) == 1  # embedded once for both
    classic = {
        **config,
        "contentPolicyConfig": {**config["contentPolicyConfig"], "tierConfig": {"tierName": "CLASSIC"}},
    }
    calls["tuned"].clear()
    asyncio.run(checker.assess(_compiled(classic), "INPUT", ["another text"]))
    assert calls["tuned"] == []
