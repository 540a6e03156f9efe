"""The playground's stream (views/playground.py, chat.py) on the whole server with keys: answers as they are
written, through Inference (access, guardrails, usage records) as the APIs do."""

from __future__ import annotations

import json
import time
from typing import Any

from outcrop.metering.usage import summarize
from outcrop.models import BUILTIN_MODEL_ID
from tests.console.conftest import BLOCKED_IN, BLOCKED_OUT, EARLY, ECHO, OFF, Console, Served, signed_in

CAPITAL = [{"role": "user", "text": "What is the capital of France?"}]


def _chat(c: Console, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = c.post_json("/console/playground/chat", body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in r.text.splitlines() if line]


def test_an_answer_streams_as_start_text_and_stop_with_its_figures(keyed: Served, console: Any) -> None:
    events = _chat(signed_in(console, keyed, "alice"), {"model": BUILTIN_MODEL_ID, "messages": CAPITAL,
                                                        "temperature": 0, "maxTokens": 64})  # fmt: skip
    assert events[0] == {"type": "start", "model": BUILTIN_MODEL_ID, "inputTokens": events[0]["inputTokens"]}
    texts = [e for e in events if e["type"] == "text"]
    assert len(texts) > 1 and "".join(e["text"] for e in texts) == "The capital of France is Paris."
    stop = events[-1]
    assert stop["type"] == "stop" and stop["stopReason"] == "end_turn" and stop["guardrail"] is None
    assert stop["usage"]["inputTokens"] > 0 and stop["usage"]["outputTokens"] == len(texts)
    assert stop["ttftMs"] is not None and stop["latencyMs"] >= stop["ttftMs"]


def test_the_first_words_leave_before_the_answer_is_finished(keyed: Served, console: Any) -> None:
    """Hanging up after the first words cancels the generation: it was still running when they arrived."""
    c = signed_in(console, keyed, "alice")
    echo = keyed.app.context.registry.loaded()[ECHO]
    before = echo.stats()
    words = " ".join(f"w{i}" for i in range(40))  # 40 words at 50 ms each: 2 s to write
    body = {"model": ECHO, "messages": [{"role": "user", "text": words}]}
    headers = {"Origin": c.url, "X-CSRF-Token": c.csrf("/console/playground")}
    with c.http.stream("POST", "/console/playground/chat", json=body, headers=headers) as r:
        for line in r.iter_lines():
            if json.loads(line)["type"] == "text":
                break
    for _ in range(200):  # the server notices the hang-up at its next write
        if echo.stats().cancelled > before.cancelled:
            break
        time.sleep(0.05)
    assert echo.stats().cancelled == before.cancelled + 1
    assert echo.stats().completed == before.completed


def test_a_guardrail_blocking_the_answer_says_which_policy_and_why(keyed: Served, console: Any) -> None:
    events = _chat(signed_in(console, keyed, "alice"), {"model": BUILTIN_MODEL_ID, "messages": CAPITAL,
                                                        "temperature": 0,
                                                        "guardrail": {"id": keyed.guardrail, "version": "1"}})  # fmt: skip
    stop = events[-1]
    assert "".join(e["text"] for e in events if e["type"] == "text").endswith(BLOCKED_OUT)
    assert stop["stopReason"] == "guardrail_intervened" and stop["guardrail"]["action"] == "INTERVENED"
    found = stop["guardrail"]["findings"]
    assert {"where": "output", "guardrail": keyed.guardrail, "policy": "wordPolicy", "kind": "customWords",
            "item": "Paris", "match": "Paris", "reason": None, "action": "BLOCKED"} in found  # fmt: skip


def test_a_guardrail_blocking_the_question_never_runs_the_model(keyed: Served, console: Any) -> None:
    question = [{"role": "user", "text": "Tell me about the frobnicator."}]
    events = _chat(signed_in(console, keyed, "alice"),
                   {"model": ECHO, "messages": question, "guardrail": {"id": keyed.guardrail}})  # fmt: skip
    assert "".join(e["text"] for e in events if e["type"] == "text") == BLOCKED_IN
    findings = events[-1]["guardrail"]["findings"]
    assert [(f["where"], f["policy"], f["match"], f["action"]) for f in findings] == [
        ("input", "wordPolicy", "frobnicator", "BLOCKED")
    ]


def test_access_rules_hold_in_the_playground(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    for model, word in ((EARLY, "early access"), (OFF, "disabled")):
        r = alice.post_json("/console/playground/chat", {"model": model, "messages": CAPITAL})
        assert r.status_code == 403 and word in r.json()["message"], model
    r = alice.post_json("/console/playground/chat", {"model": "no.such-model", "messages": CAPITAL})
    assert r.status_code == 404
    page = alice.http.get("/console/playground").text
    assert f'<option value="{EARLY}"' not in page and f'<option value="{OFF}"' not in page


def test_bad_requests_are_refused_with_a_message(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    for body, words in (
        ({"model": ECHO, "messages": []}, "messages"),
        ({"model": ECHO, "messages": [{"role": "assistant", "text": "hi"}]}, "last message must be the user's"),
        ({"model": ECHO, "messages": CAPITAL, "temperature": 3}, "temperature"),
        ({"model": ECHO, "messages": CAPITAL, "stream": True}, "Extra inputs"),
        ({"model": ECHO, "messages": CAPITAL, "guardrail": {"id": "g", "version": "v1"}}, "guardrail.version"),
    ):
        r = alice.post_json("/console/playground/chat", body)
        assert r.status_code == 400 and words in r.json()["message"], body


def test_playground_calls_are_metered_as_the_callers_under_the_console_dialect(keyed: Served, console: Any) -> None:
    bob = signed_in(console, keyed, "bob")
    _chat(bob, {"model": ECHO, "messages": [{"role": "user", "text": "count me"}]})
    rows = summarize(keyed.keyring.engine, ("dialect", "model"), principal="bob")
    assert {"dialect": "console", "model": ECHO} in [{k: r[k] for k in ("dialect", "model")} for r in rows]


def test_the_page_offers_the_usable_models_and_the_guardrails_with_their_versions(keyed: Served, console: Any) -> None:
    page = signed_in(console, keyed, "alice").http.get(f"/console/playground?model={ECHO}").text
    assert f'<option value="{ECHO}" selected>' in page and f'<option value="{BUILTIN_MODEL_ID}"' in page
    data = json.loads(page.split('id="playground-data">', 1)[1].split("</script>", 1)[0])
    assert {"id": keyed.guardrail, "name": "console-test", "versions": ["DRAFT", "1"]} in data["guardrails"]
