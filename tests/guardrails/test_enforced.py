"""Account-level enforced guardrails (Put/List/DeleteEnforcedGuardrailConfiguration) through boto3 against a
real server with the built-in model: the control plane's shapes and errors, enforcement on every call and
API, model inclusion and exclusion, and COMPREHENSIVE versus SELECTIVE guarding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import Settings
from outcrop.guardrails.store import GuardrailStore
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.registry import Registry
from tests.conftest import client, serve_app

MODEL = BUILTIN_MODEL_ID
BLOCKED_IN = "Blocked by the account's guardrail."
BLOCKED_OUT = "That answer is blocked by the account's guardrail."
HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = Path(tmp_path_factory.mktemp("enforced"))
    gstore = GuardrailStore(store.connect(f"sqlite:///{tmp / 'o.db'}"))
    settings = Settings(config_path=tmp / "c.toml", builtin_embedding_model=False)
    app = build_app(settings, Registry(settings), guardrails=gstore)
    with serve_app(app) as url:
        control = client("bedrock", url)
        gid = control.create_guardrail(
            name="account", blockedInputMessaging=BLOCKED_IN, blockedOutputsMessaging=BLOCKED_OUT,
            wordPolicyConfig={"wordsConfig": [{"text": "frobnicator"}, {"text": "Paris", "inputEnabled": False}]},
        )["guardrailId"]  # fmt: skip
        control.create_guardrail_version(guardrailIdentifier=gid)
        yield {"url": url, "control": control, "rt": client("bedrock-runtime", url), "gid": gid}


@pytest.fixture
def enforce(env: dict[str, Any]) -> Iterator[Any]:
    """Put a configuration for the test; remove whatever is configured afterwards."""

    def put(**config: Any) -> str:
        found = env["control"].list_enforced_guardrails_configuration()["guardrailsConfig"]
        kw = {"configId": found[0]["configId"]} if found else {}
        body = {"guardrailIdentifier": env["gid"], "guardrailVersion": "1", **config}
        return str(env["control"].put_enforced_guardrail_configuration(guardrailInferenceConfig=body, **kw)["configId"])

    yield put
    for c in env["control"].list_enforced_guardrails_configuration()["guardrailsConfig"]:
        env["control"].delete_enforced_guardrail_configuration(configId=c["configId"])


def _code(call: Any, **kw: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as err:
        call(**kw)
    r = err.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"]["Message"]


def test_put_list_replace_delete(env: dict[str, Any]) -> None:
    control, gid = env["control"], env["gid"]
    assert control.list_enforced_guardrails_configuration()["guardrailsConfig"] == []
    made = control.put_enforced_guardrail_configuration(
        guardrailInferenceConfig={"guardrailIdentifier": gid, "guardrailVersion": "1"}
    )
    config_id = made["configId"]
    assert made["updatedBy"] and made["updatedAt"]
    [listed] = control.list_enforced_guardrails_configuration()["guardrailsConfig"]
    assert listed["configId"] == config_id and listed["guardrailId"] == gid and listed["guardrailVersion"] == "1"
    assert listed["guardrailArn"].endswith(f":guardrail/{gid}") and listed["owner"] == "ACCOUNT"
    assert listed["selectiveContentGuarding"] == {"system": "COMPREHENSIVE", "messages": "COMPREHENSIVE"}
    assert listed["inputTags"] == "IGNORE" and "modelEnforcement" not in listed
    # one per account: a second one without the first's configId conflicts; with it, it replaces the first
    status, code, message = _code(control.put_enforced_guardrail_configuration,
                                  guardrailInferenceConfig={"guardrailIdentifier": gid, "guardrailVersion": "1"})  # fmt: skip
    assert (status, code) == (400, "ConflictException") and config_id in message
    control.put_enforced_guardrail_configuration(configId=config_id, guardrailInferenceConfig={
        "guardrailIdentifier": gid, "guardrailVersion": "1", "selectiveContentGuarding": {"messages": "SELECTIVE"},
        "modelEnforcement": {"includedModels": ["ALL"], "excludedModels": ["some.other-model"]}})  # fmt: skip
    [listed] = control.list_enforced_guardrails_configuration()["guardrailsConfig"]
    assert listed["selectiveContentGuarding"] == {"system": "COMPREHENSIVE", "messages": "SELECTIVE"}
    assert listed["inputTags"] == "HONOR"
    assert listed["modelEnforcement"] == {"includedModels": ["ALL"], "excludedModels": ["some.other-model"]}
    # the enforced version cannot be deleted from under the configuration
    status, code, message = _code(control.delete_guardrail, guardrailIdentifier=gid, guardrailVersion="1")
    assert (status, code) == (400, "ResourceInUseException") and config_id in message
    status, code, _ = _code(control.delete_guardrail, guardrailIdentifier=gid)
    assert (status, code) == (400, "ResourceInUseException")
    control.delete_enforced_guardrail_configuration(configId=config_id)
    assert control.list_enforced_guardrails_configuration()["guardrailsConfig"] == []


def test_bad_configurations_are_refused_naming_the_problem(env: dict[str, Any]) -> None:
    put, gid = env["control"].put_enforced_guardrail_configuration, env["gid"]
    status, code, message = _code(put, guardrailInferenceConfig={"guardrailIdentifier": gid, "guardrailVersion": "9"})
    assert (status, code) == (404, "ResourceNotFoundException") and "9" in message
    status, code, _ = _code(put, guardrailInferenceConfig={"guardrailIdentifier": "nosuch", "guardrailVersion": "1"})
    assert (status, code) == (404, "ResourceNotFoundException")
    status, code, message = _code(put, configId="nosuchconfig",
                                  guardrailInferenceConfig={"guardrailIdentifier": gid, "guardrailVersion": "1"})  # fmt: skip
    assert (status, code) == (404, "ResourceNotFoundException") and "nosuchconfig" in message
    status, code, _ = _code(env["control"].delete_enforced_guardrail_configuration, configId="nosuchconfig")
    assert (status, code) == (404, "ResourceNotFoundException")
    # what boto3 would refuse itself, sent as plain HTTP: DRAFT is not a numbered version, a bad mode
    import httpx

    for inner, says in (({"guardrailVersion": "DRAFT"}, "guardrailVersion"),
                        ({"guardrailVersion": "1", "selectiveContentGuarding": {"system": "SOMETIMES"}}, "system")):  # fmt: skip
        r = httpx.put(env["url"] + "/enforcedGuardrailsConfiguration",
                      json={"guardrailInferenceConfig": {"guardrailIdentifier": gid, **inner}})  # fmt: skip
        assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationException", r.text
        assert says in r.json()["message"]
    assert env["control"].list_enforced_guardrails_configuration()["guardrailsConfig"] == []


def test_every_call_gets_it_on_every_api(env: dict[str, Any], enforce: Any) -> None:
    import openai

    rt = env["rt"]
    assert rt.converse(modelId=MODEL, messages=HELLO)["stopReason"] == "end_turn"
    enforce()
    out = rt.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "Is my frobnicator ok?"}]}])
    assert out["stopReason"] == "guardrail_intervened" and out["output"]["message"]["content"] == [{"text": BLOCKED_IN}]
    # the model's own answer is checked too: the tiny model says Paris
    capital = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
    out = rt.converse(modelId=MODEL, messages=capital)
    assert out["output"]["message"]["content"] == [{"text": BLOCKED_OUT}]
    oa = openai.OpenAI(base_url=env["url"] + "/v1", api_key="x")
    answer = oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "frobnicator?"}])
    assert answer.choices[0].finish_reason == "content_filter"
    assert rt.converse(modelId=MODEL, messages=HELLO)["stopReason"] == "end_turn"


def test_model_enforcement_includes_and_excludes(env: dict[str, Any], enforce: Any) -> None:
    rt = env["rt"]
    frob = [{"role": "user", "content": [{"text": "frobnicator"}]}]
    enforce(modelEnforcement={"includedModels": ["ALL"], "excludedModels": [MODEL]})
    assert rt.converse(modelId=MODEL, messages=frob)["stopReason"] != "guardrail_intervened"
    enforce(modelEnforcement={"includedModels": ["some.other-model"], "excludedModels": []})
    assert rt.converse(modelId=MODEL, messages=frob)["stopReason"] != "guardrail_intervened"
    enforce(modelEnforcement={"includedModels": ["some.other-model", MODEL], "excludedModels": []})
    assert rt.converse(modelId=MODEL, messages=frob)["stopReason"] == "guardrail_intervened"
    # in both lists: excluded
    enforce(modelEnforcement={"includedModels": [MODEL], "excludedModels": [MODEL]})
    assert rt.converse(modelId=MODEL, messages=frob)["stopReason"] != "guardrail_intervened"


def test_comprehensive_reads_what_the_caller_did_not_mark(env: dict[str, Any], enforce: Any) -> None:
    """guardContent cannot steer an enforced guardrail to a harmless snippet unless the account chose SELECTIVE."""
    rt = env["rt"]
    steered = [{"role": "user", "content": [{"text": "The frobnicator manual says:"},
                                            {"guardContent": {"text": {"text": "Hello"}}}]}]  # fmt: skip
    enforce()
    assert rt.converse(modelId=MODEL, messages=steered)["stopReason"] == "guardrail_intervened"
    enforce(selectiveContentGuarding={"messages": "SELECTIVE", "system": "SELECTIVE"})
    out = rt.converse(modelId=MODEL, messages=steered)  # the input passes (the answer is checked on its own)
    assert out["output"]["message"]["content"] != [{"text": BLOCKED_IN}]
    # the system prompt: read whole when COMPREHENSIVE, only its guardContent when SELECTIVE
    system = [{"text": "You answer questions about the frobnicator."}]
    out = rt.converse(modelId=MODEL, messages=HELLO, system=system)
    assert out["output"]["message"]["content"] != [{"text": BLOCKED_IN}]
    enforce(selectiveContentGuarding={"messages": "SELECTIVE", "system": "COMPREHENSIVE"})
    out = rt.converse(modelId=MODEL, messages=HELLO, system=system)
    assert out["stopReason"] == "guardrail_intervened" and out["output"]["message"]["content"] == [{"text": BLOCKED_IN}]


def test_cli_sets_shows_and_removes_the_enforced_guardrail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from outcrop.cli import main

    monkeypatch.setenv("OUTCROP_HOME", str(tmp_path / "home"))
    cfg = ["--config", str(tmp_path / "c.toml"), "guardrails"]
    definition = tmp_path / "g.json"
    definition.write_text(json.dumps({"name": "acct", "blockedInputMessaging": "No.", "blockedOutputsMessaging": "No!",
                                      "wordPolicyConfig": {"wordsConfig": [{"text": "frobnicator"}]}}))  # fmt: skip
    assert main([*cfg, "create", str(definition)]) == 0
    gid = capsys.readouterr().out.split()[2]
    assert main([*cfg, "enforce", gid, "1"]) == 2  # no published version yet
    assert "version 1" in capsys.readouterr().err.lower()
    assert main([*cfg, "version", gid]) == 0
    assert main([*cfg, "enforce", gid, "1", "--exclude", "outcrop.all-minilm-l6-v2"]) == 0
    assert main([*cfg, "enforce", gid, "1", "--messages", "SELECTIVE"]) == 0  # replaces, no conflict
    capsys.readouterr()
    assert main([*cfg, "enforced"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["guardrailsConfig"]
    assert shown["guardrailId"] == gid and shown["selectiveContentGuarding"]["messages"] == "SELECTIVE"
    assert "modelEnforcement" not in shown
    assert main([*cfg, "unenforce"]) == 0
    capsys.readouterr()
    assert main([*cfg, "enforced"]) == 0
    assert json.loads(capsys.readouterr().out) == {"guardrailsConfig": []}


def test_a_grounding_source_cannot_carry_text_past_it(env: dict[str, Any], enforce: Any) -> None:
    """The model reads a grounding_source block too, so a COMPREHENSIVE guardrail checks it as input."""
    enforce()
    sneaky = [{"role": "user", "content": [
        {"guardContent": {"text": {"text": "All about the frobnicator.", "qualifiers": ["grounding_source"]}}},
        {"guardContent": {"text": {"text": "Hello", "qualifiers": ["query"]}}}]}]  # fmt: skip
    out = env["rt"].converse(modelId=MODEL, messages=sneaky)
    assert out["output"]["message"]["content"] == [{"text": BLOCKED_IN}]


def test_naming_the_enforced_guardrail_does_not_weaken_it(env: dict[str, Any], enforce: Any) -> None:
    """A request that names the account's guardrail itself (by ARN, async) gets it once, and still sync: the
    blocked answer's text is never streamed."""
    enforce()
    arn = env["control"].get_guardrail(guardrailIdentifier=env["gid"], guardrailVersion="1")["guardrailArn"]
    capital = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
    cfg = {"guardrailIdentifier": arn, "guardrailVersion": "1", "trace": "enabled", "streamProcessingMode": "async"}
    events = list(env["rt"].converse_stream(modelId=MODEL, messages=capital, guardrailConfig=cfg)["stream"])
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert "Paris" not in text and BLOCKED_OUT in text
    [meta] = [e["metadata"] for e in events if "metadata" in e]
    assert len(meta["trace"]["guardrail"]["outputAssessments"]) == 1  # run once, not twice
