"""Quotas over HTTP (/outcrop/v1/quotas) on a real keyed server, enforced on a member's real openai calls, and
`outcrop quotas` as a subprocess on the store of an OUTCROP_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.access import AccessControl
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.keys import Keyring
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.metering.quotas import QuotaRule, Quotas
from outcrop.registry import Registry
from tests.conftest import ECHO, serve_app

HELLO = [{"role": "user", "content": "Hello"}]


@dataclass
class Served:
    url: str
    admin: dict[str, str]
    member: dict[str, str]
    member_key: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("quotas-api")
    engine = store.connect(f"sqlite:///{tmp / 'o.db'}")
    keyring = Keyring(engine, tmp / "secret.key")
    keyring.ensure_principal("ops", admin=True)
    keyring.ensure_principal("mia", group_names=("team",))
    admin_key, member_key = keyring.create_api_key("ops")[1], keyring.create_api_key("mia")[1]
    config_rule = QuotaRule(principal="someone-else", tokens_per_minute=5000)
    specs = (ModelSpec(id=ECHO, engine="echo", n_ctx=256, max_queue=16, aliases=("echo",)),)
    settings = Settings(config_path=tmp / "c.toml", builtin_embedding_model=False, auth="keys", models=specs)
    registry = Registry(settings, {ECHO: EchoEngine(context_length=256, max_queue=16)})
    app = build_app(settings, registry, Authenticator("keys", keyring), AccessControl(engine, {}),
                    Quotas(engine, (config_rule,)))  # fmt: skip
    with serve_app(app) as url:
        yield Served(url, {"Authorization": f"Bearer {admin_key}"}, {"Authorization": f"Bearer {member_key}"},
                     member_key)  # fmt: skip


def _chat(s: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url + "/v1", api_key=s.member_key, max_retries=0)


def test_a_rule_set_over_http_limits_the_members_next_calls_and_delete_lifts_it(served: Served) -> None:
    client = _chat(served)
    assert client.chat.completions.create(model=ECHO, messages=HELLO).choices[0].message.content  # no limit yet

    r = httpx.put(served.url + "/outcrop/v1/quotas", headers=served.admin,
                  json={"principal": "mia", "model": "echo", "requestsPerMinute": 1})  # fmt: skip
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["ruleId"].startswith("q_") and rule["model"] == ECHO  # the alias resolved, as requests are counted
    assert (rule["principal"], rule["group"], rule["requestsPerMinute"], rule["tokensPerMinute"]) == ("mia", None, 1,
                                                                                                      None)  # fmt: skip
    assert rule["createdBy"] == "ops" and rule["createdAt"] and rule["readOnly"] is False

    # One request a minute: of three in a row, at least one of the last two falls in the first one's minute (a
    # minute's boundary can pass between two of them, not twice within a few seconds).
    refused = []
    for _ in range(3):
        try:
            client.chat.completions.create(model=ECHO, messages=HELLO)
        except openai.RateLimitError as exc:
            refused.append(exc)
    assert 1 <= len(refused) <= 2
    err = refused[0]
    assert err.status_code == 429 and err.response.headers.get("retry-after")
    body = err.response.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and "Quota exceeded for 'mia'" in body["message"]

    listed = httpx.get(served.url + "/outcrop/v1/quotas", headers=served.admin).json()["quotas"]
    assert [q["ruleId"] for q in listed if not q["readOnly"]] == [rule["ruleId"]]

    d = httpx.delete(f"{served.url}/outcrop/v1/quotas/{rule['ruleId']}", headers=served.admin)
    assert d.status_code == 200 and d.json() == {"ruleId": rule["ruleId"], "removed": True}
    for _ in range(3):  # no limit any more, whatever the minute
        assert client.chat.completions.create(model=ECHO, messages=HELLO).choices[0].message.content

    gone = httpx.delete(f"{served.url}/outcrop/v1/quotas/{rule['ruleId']}", headers=served.admin)
    assert gone.status_code == 404 and gone.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert rule["ruleId"] in gone.json()["message"]


def test_list_shows_the_config_files_rules_read_only_and_put_replaces_the_same_subject(served: Served) -> None:
    url = served.url + "/outcrop/v1/quotas"
    first = httpx.put(url, headers=served.admin, json={"group": "team", "tokensPerMinute": 100.0})  # a whole number
    again = httpx.put(url, headers=served.admin, json={"group": "team", "model": "*", "concurrentStreams": 2})
    assert (first.status_code, again.status_code) == (201, 200)
    listed = httpx.get(url, headers=served.admin).json()["quotas"]
    config = [q for q in listed if q["readOnly"]]
    assert config == [{"ruleId": None, "source": "config", "readOnly": True, "principal": "someone-else",
                       "group": None, "everyone": False, "model": "*", "requestsPerMinute": None, "tokensPerMinute": 5000,
                       "concurrentStreams": None, "createdBy": None, "createdAt": None}]  # fmt: skip
    team = [q for q in listed if q["group"] == "team"]
    assert first.json()["tokensPerMinute"] == 100 and isinstance(first.json()["tokensPerMinute"], int)
    assert len(team) == 1 and team[0]["ruleId"] == again.json()["ruleId"] != first.json()["ruleId"]
    assert (team[0]["tokensPerMinute"], team[0]["concurrentStreams"]) == (None, 2)
    assert httpx.delete(f"{url}/{team[0]['ruleId']}", headers=served.admin).status_code == 200


def test_a_rule_for_everyone_limits_every_principal(served: Served) -> None:
    """{"everyone": true}: neither a principal nor a group, as a config-file rule with neither; the admin is
    counted too (each principal on its own)."""
    url = served.url + "/outcrop/v1/quotas"
    r = httpx.put(url, headers=served.admin, json={"everyone": True, "model": "echo", "requestsPerMinute": 0})
    assert r.status_code == 201, r.text
    rule = r.json()
    assert (rule["principal"], rule["group"], rule["everyone"], rule["requestsPerMinute"]) == (None, None, True, 0)
    try:
        with pytest.raises(openai.RateLimitError, match="Quota exceeded for 'mia'"):
            _chat(served).chat.completions.create(model=ECHO, messages=HELLO)
        admin = openai.OpenAI(base_url=served.url + "/v1", api_key=served.admin["Authorization"][7:], max_retries=0)
        with pytest.raises(openai.RateLimitError, match="Quota exceeded for 'ops'"):
            admin.chat.completions.create(model=ECHO, messages=HELLO)
        again = httpx.put(url, headers=served.admin, json={"everyone": True, "model": ECHO, "requestsPerMinute": 0})
        assert again.status_code == 200 and again.json()["ruleId"] != rule["ruleId"]  # replaced, not added
        rule = again.json()
    finally:
        assert httpx.delete(f"{url}/{rule['ruleId']}", headers=served.admin).status_code == 200
    assert _chat(served).chat.completions.create(model=ECHO, messages=HELLO).choices[0].message.content


def test_a_member_is_refused(served: Served) -> None:
    url = served.url + "/outcrop/v1/quotas"
    for r in (
        httpx.get(url, headers=served.member),
        httpx.put(url, headers=served.member, json={"principal": "mia", "requestsPerMinute": 1000}),
        httpx.delete(url + "/q_000000000000", headers=served.member),
    ):
        assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "AccessDeniedException", r.text
        assert "administrator" in r.json()["message"]
    assert not [q for q in httpx.get(url, headers=served.admin).json()["quotas"] if q["principal"] == "mia"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b"{}", "give one of them, not two"),
        (json.dumps({"principal": "a", "group": "b", "requestsPerMinute": 1}).encode(), "not two"),
        (json.dumps({"group": "b", "everyone": True, "requestsPerMinute": 1}).encode(), "not two"),
        (json.dumps({"everyone": False, "requestsPerMinute": 1}).encode(), '"everyone" must be true'),
        (json.dumps({"principal": " ", "requestsPerMinute": 1}).encode(), '"principal" must be a name'),
        (json.dumps({"principal": "a"}).encode(), "Set at least one limit"),
        (json.dumps({"principal": "a", "requestsPerMinute": -1}).encode(), '"requestsPerMinute" must be a whole'),
        (json.dumps({"principal": "a", "tokensPerMinute": 1.5}).encode(), '"tokensPerMinute" must be a whole'),
        (json.dumps({"principal": "a", "concurrentStreams": True}).encode(), '"concurrentStreams" must be a whole'),
        (json.dumps({"principal": "a", "requestsPerMinute": 2**40}).encode(), "from 0 to 2147483647"),
        (
            json.dumps({"principal": "a", "requests_per_minute": 1}).encode(),
            "Unknown member(s) ['requests_per_minute']",
        ),
        (json.dumps({"principal": "a", "model": "no.such-model", "requestsPerMinute": 1}).encode(), "not served here"),
        (json.dumps({"principal": "a", "model": 7, "requestsPerMinute": 1}).encode(), '"model" must be a model id'),
    ],
)
def test_bad_bodies_are_400_with_a_message(served: Served, body: bytes, says: str) -> None:
    r = httpx.put(served.url + "/outcrop/v1/quotas", headers={**served.admin, "content-type": "application/json"},
                  content=body)  # fmt: skip
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationException", r.text
    assert says in r.json()["message"]


def test_the_openapi_document_has_the_routes(served: Served) -> None:
    paths = httpx.get(served.url + "/openapi.json").json()["paths"]
    assert set(paths["/outcrop/v1/quotas"]) == {"get", "put"} and "delete" in paths["/outcrop/v1/quotas/{ruleId}"]
    schema = paths["/outcrop/v1/quotas"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"principal", "group", "everyone", "model", "requestsPerMinute", "tokensPerMinute",
            "concurrentStreams"} == set(schema["properties"])  # fmt: skip


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTCROP_HOME": str(home)}
    env.pop("OUTCROP_CONFIG", None)
    env.pop("OUTCROP_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "outcrop.cli", "quotas", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_cli_set_list_remove(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[[quotas]]\ngroup = "beta"\nrequests_per_minute = 60\n')
    made = _cli(home, "set", "--principal", "alice", "--rpm", "5", "--tpm", "1000", "--by", "ops")
    assert made.returncode == 0, made.stderr
    rule_id = made.stdout.split()[1]
    assert rule_id.startswith("q_") and "principal alice on every model" in made.stdout

    table = _cli(home, "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["RULE", "FOR", "MODEL", "RPM", "TPM", "STREAMS", "SET", "BY", "SET", "AT"]
    assert lines[1].split()[:7] == ["(config)", "group:beta", "*", "60", "-", "-", "config"]
    assert lines[2].split()[:7] == [rule_id, "principal:alice", "*", "5", "1000", "-", "ops"]

    rules = json.loads(_cli(home, "list", "--json").stdout)
    assert [r["ruleId"] for r in rules] == [None, rule_id] and rules[1]["tokensPerMinute"] == 1000

    replaced = _cli(home, "set", "--principal", "alice", "--streams", "2")
    assert replaced.returncode == 0, replaced.stderr
    rules = json.loads(_cli(home, "list", "--json").stdout)
    assert len(rules) == 2 and rules[1]["concurrentStreams"] == 2 and rules[1]["requestsPerMinute"] is None

    for refused, says in (
        (_cli(home, "set", "--group", "g"), "at least one limit"),
        (_cli(home, "set", "--principal", "a", "--group", "g", "--rpm", "1"), "not allowed with argument"),
        (_cli(home, "set", "--rpm", "1"), "one of the arguments --principal --group --everyone is required"),
        (_cli(home, "set", "--everyone", "--group", "g", "--rpm", "1"), "not allowed with argument"),
        (_cli(home, "set", "--group", "g", "--rpm", "-3"), "is not a whole number"),
        (_cli(home, "set", "--group", "g", "--model", "no.such-model", "--rpm", "1"), "is not served here"),
        (_cli(home, "remove", "q_nothere"), "no quota q_nothere"),
    ):
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr

    everyone = _cli(home, "set", "--everyone", "--tpm", "50000")
    assert everyone.returncode == 0 and "for everyone on every model" in everyone.stdout, everyone.stderr
    rules = json.loads(_cli(home, "list", "--json").stdout)
    subjects = {(r["principal"], r["group"]): r for r in rules[1:]}
    assert set(subjects) == {("alice", None), (None, None)} and subjects[None, None]["tokensPerMinute"] == 50000
    everyone_id = subjects[None, None]["ruleId"]
    assert [line.split()[1] for line in _cli(home, "list").stdout.splitlines() if everyone_id in line] == ["*"]
    assert _cli(home, "remove", everyone_id).returncode == 0

    alice = subjects["alice", None]["ruleId"]
    removed = _cli(home, "remove", alice)
    assert removed.returncode == 0 and removed.stdout.strip() == f"removed {alice}"
    assert [r["source"] for r in json.loads(_cli(home, "list", "--json").stdout)] == ["config"]
