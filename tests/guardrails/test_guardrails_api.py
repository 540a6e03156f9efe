"""The guardrail control plane through boto3: create, get, list, update, version, delete, and bad definitions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import Settings
from outcrop.guardrails.store import GuardrailStore
from outcrop.registry import Registry
from tests.conftest import client, serve_app

DEFINITION: dict[str, Any] = {
    "name": "support-bot",
    "description": "What the support bot may say",
    "blockedInputMessaging": "Sorry, I can't help with that.",
    "blockedOutputsMessaging": "Sorry, I can't answer that.",
    "contentPolicyConfig": {"filtersConfig": [
        {"type": "HATE", "inputStrength": "HIGH", "outputStrength": "HIGH"},
        {"type": "PROMPT_ATTACK", "inputStrength": "MEDIUM", "outputStrength": "NONE"},
    ]},
    "topicPolicyConfig": {"topicsConfig": [
        {"name": "Investment advice", "definition": "Recommendations about investing money.",
         "examples": ["Which stocks should I buy?"], "type": "DENY"},
    ]},
    "wordPolicyConfig": {"wordsConfig": [{"text": "frobnicator"}], "managedWordListsConfig": [{"type": "PROFANITY"}]},
    "sensitiveInformationPolicyConfig": {
        "piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"}, {"type": "US_SOCIAL_SECURITY_NUMBER", "action": "BLOCK"}],
        "regexesConfig": [{"name": "ticket", "pattern": r"TCK-\d{6}", "action": "ANONYMIZE"}],
    },
    "contextualGroundingPolicyConfig": {"filtersConfig": [{"type": "GROUNDING", "threshold": 0.7}]},
}  # fmt: skip


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = Path(tmp_path_factory.mktemp("guardrails"))
    settings = Settings(config_path=tmp / "c.toml", builtin_embedding_model=False)
    app = build_app(settings, Registry(settings), guardrails=GuardrailStore(store.connect(f"sqlite:///{tmp / 'o.db'}")))
    with serve_app(app) as url:
        yield client("bedrock", url)


def test_lifecycle(control: Any) -> None:
    made = control.create_guardrail(**DEFINITION)
    gid = made["guardrailId"]
    assert made["version"] == "DRAFT" and len(gid) == 12 and made["guardrailArn"].endswith(f":guardrail/{gid}")
    got = control.get_guardrail(guardrailIdentifier=gid)
    assert got["name"] == "support-bot" and got["status"] == "READY" and got["version"] == "DRAFT"
    assert [f["type"] for f in got["contentPolicy"]["filters"]] == ["HATE", "PROMPT_ATTACK"]
    assert got["topicPolicy"]["topics"][0]["name"] == "Investment advice"
    assert got["sensitiveInformationPolicy"]["regexes"][0]["pattern"] == r"TCK-\d{6}"
    assert got["contextualGroundingPolicy"]["filters"][0]["threshold"] == 0.7
    assert got["blockedInputMessaging"] == DEFINITION["blockedInputMessaging"]

    v1 = control.create_guardrail_version(guardrailIdentifier=gid, description="first")
    assert v1["version"] == "1"
    changed = {**DEFINITION, "blockedInputMessaging": "No.", "wordPolicyConfig": {"wordsConfig": [{"text": "widget"}]}}
    control.update_guardrail(guardrailIdentifier=gid, **changed)
    # updates never break a published version
    assert (
        control.get_guardrail(guardrailIdentifier=gid, guardrailVersion="1")["blockedInputMessaging"]
        == DEFINITION["blockedInputMessaging"]
    )
    assert control.get_guardrail(guardrailIdentifier=made["guardrailArn"])["blockedInputMessaging"] == "No."
    assert control.create_guardrail_version(guardrailIdentifier=gid)["version"] == "2"
    versions = control.list_guardrails(guardrailIdentifier=gid)["guardrails"]
    assert [g["version"] for g in versions] == ["DRAFT", "1", "2"]
    assert gid in [g["id"] for g in control.list_guardrails()["guardrails"]]

    control.delete_guardrail(guardrailIdentifier=gid, guardrailVersion="1")
    with pytest.raises(ClientError) as err:
        control.get_guardrail(guardrailIdentifier=gid, guardrailVersion="1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    control.delete_guardrail(guardrailIdentifier=gid)
    with pytest.raises(ClientError) as err:
        control.get_guardrail(guardrailIdentifier=gid)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {
                "contentPolicyConfig": {
                    "filtersConfig": [{"type": "HATE", "inputStrength": "EXTREME", "outputStrength": "LOW"}]
                }
            },
            "inputStrength",
        ),
        (
            {
                "contentPolicyConfig": {
                    "filtersConfig": [{"type": "GOSSIP", "inputStrength": "LOW", "outputStrength": "LOW"}]
                }
            },
            "GOSSIP",
        ),
        (
            {"sensitiveInformationPolicyConfig": {"regexesConfig": [{"name": "x", "pattern": "(", "action": "BLOCK"}]}},
            "regular expression",
        ),
        (
            {"contextualGroundingPolicyConfig": {"filtersConfig": [{"type": "GROUNDING", "threshold": 1.5}]}},
            "threshold",
        ),
    ],
)
def test_malformed_policies_name_the_field(control: Any, change: dict[str, Any], needle: str) -> None:
    with pytest.raises(ClientError) as err:
        control.create_guardrail(**{**DEFINITION, "name": "bad", **change})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert needle in err.value.response["Error"]["Message"]


def test_unknown_guardrail_and_bad_version(control: Any) -> None:
    with pytest.raises(ClientError) as err:
        control.get_guardrail(guardrailIdentifier="nosuchguardrail")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    gid = control.create_guardrail(**{**DEFINITION, "name": "versions"})["guardrailId"]
    with pytest.raises(ClientError) as err:
        control.get_guardrail(guardrailIdentifier=gid, guardrailVersion="latest")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        control.create_guardrail(**{**DEFINITION, "name": "versions"})
    assert "already exists" in err.value.response["Error"]["Message"]


def test_unknown_member_from_a_hand_written_client(control: Any) -> None:
    import httpx

    body = {
        **DEFINITION,
        "name": "raw",
        "topicPolicyConfig": {"topicsConfig": [{"name": "t", "definition": "d", "type": "DENY", "colour": "red"}]},
    }
    r = httpx.post(control.meta.endpoint_url + "/guardrails", json=body, timeout=60)
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationException"
    assert "topicPolicyConfig.topicsConfig.0.colour is not a known member" in r.json()["message"]


def test_a_constitution_travels_with_the_definition(control: Any) -> None:
    """boto3 cannot send the `constitution` extension; a plain HTTP client (or the CLI) can."""
    url = control.meta.endpoint_url + "/guardrails"
    rules = {"judgeModel": "outcrop.tiny-chat-v1:0", "useDefault": True, "reviseOutput": True}
    r = httpx.post(url, json={**DEFINITION, "name": "constituted", "constitution": rules}, timeout=60)
    assert r.status_code == 202
    got = control.get_guardrail(guardrailIdentifier=r.json()["guardrailId"])
    assert got["name"] == "constituted"  # boto3 ignores the extension in the answer
    raw = httpx.get(f"{url}/{r.json()['guardrailId']}", timeout=60).json()
    assert raw["constitution"]["reviseOutput"] is True
    bad = {**rules, "principles": ["be kind", ""]}
    r = httpx.post(url, json={**DEFINITION, "name": "badly-constituted", "constitution": bad}, timeout=60)
    assert r.status_code == 400 and "constitution.principles.1" in r.json()["message"]


def test_a_standard_tier_definition_from_bedrock_is_accepted_with_its_cross_region_profile(control: Any) -> None:
    """Bedrock requires crossRegionConfig for the STANDARD tier, so definitions written for it carry one: it is
    kept and reported back (there is nothing to route here); a malformed profile is refused naming the field."""
    body = {**DEFINITION, "name": "from-bedrock",
            "contentPolicyConfig": {**DEFINITION["contentPolicyConfig"], "tierConfig": {"tierName": "STANDARD"}},
            "crossRegionConfig": {"guardrailProfileIdentifier": "us.guardrail.v1:0"}}  # fmt: skip
    gid = control.create_guardrail(**body)["guardrailId"]
    got = control.get_guardrail(guardrailIdentifier=gid)
    assert got["crossRegionDetails"]["guardrailProfileId"] == "us.guardrail.v1:0"
    assert got["crossRegionDetails"]["guardrailProfileArn"].endswith(":guardrail-profile/us.guardrail.v1:0")
    assert got["contentPolicy"]["tier"] == {"tierName": "STANDARD"}
    bad = {**body, "name": "bad-profile", "crossRegionConfig": {"guardrailProfileIdentifier": "not a profile at all"}}
    r = httpx.post(control.meta.endpoint_url + "/guardrails", json=bad)
    assert r.status_code == 400 and "crossRegionConfig.guardrailProfileIdentifier" in r.json()["message"]
    with pytest.raises(ClientError) as err:
        control.create_guardrail(**{**body, "name": "reasoning", "automatedReasoningPolicyConfig": {"policies": ["p"]}})
    assert "automatedReasoningPolicyConfig" in err.value.response["Error"]["Message"]


def test_list_guardrails_pages(control: Any) -> None:
    for i in range(3):
        control.create_guardrail(**{**DEFINITION, "name": f"paged-{i}"})
    everything = [g["id"] for g in control.list_guardrails()["guardrails"]]
    first = control.list_guardrails(maxResults=2)
    assert [g["id"] for g in first["guardrails"]] == everything[:2] and first["nextToken"]
    second = control.list_guardrails(maxResults=2, nextToken=first["nextToken"])
    assert [g["id"] for g in second["guardrails"]] == everything[2:4]
    pages = control.get_paginator("list_guardrails").paginate(PaginationConfig={"PageSize": 2})
    assert [g["id"] for page in pages for g in page["guardrails"]] == everything
    url = control.meta.endpoint_url + "/guardrails"
    for query, says in (({"maxResults": "5000"}, "maxResults"), ({"nextToken": "bogus!"}, "nextToken")):
        r = httpx.get(url, params=query)
        assert r.status_code == 400 and says in r.json()["message"]
