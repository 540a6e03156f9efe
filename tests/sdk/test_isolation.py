"""Isolation between accounts, and between the principals of one account, through real servers (issue 13: keys).

Outcrop's model: one server and its store are one account (guardrails/ids.py `ACCOUNT`); inside it, principals
(users and applications, some of them administrators) hold keys. So the two accounts here are two Outcrop
deployments, each with its own store and key file, served side by side from this process (which would also
catch a cache shared between them). In each account there is an administrator and a non-administrator; account
A has a few more principals for what belongs to one principal (access requests, a default guardrail, quotas).

From account B, with boto3 (SigV4 and Bedrock API keys) and httpx for the OpenAI, Anthropic and Outcrop routes,
every resource of account A that exists today is tried: guardrails (list, get by id and by ARN, update, delete,
CreateGuardrailVersion, tags, ApplyGuardrail, Converse / ConverseStream / InvokeModel and the OpenAI and
Anthropic guardrail header), the enforced guardrail configuration, invocation logging (its configuration and
the records delivered), usage, keys, access requests and the administrators' routes. A refusal must be in the
vendor's shape, and an id of another account must answer as an id that never existed (not found, not "access
denied": nothing reveals that it exists); so is a guardrail ARN that names another account, even with the id of
one of ours (it used to find ours: guardrails/ids.py now reads only this account's ARNs). Inside an account,
guardrails and the enforced configuration are the account's and readable by all of its principals (as on
Bedrock); what belongs to one principal is not another's to see.

Not covered because it does not exist: batch / customization jobs and knowledge bases (no routes yet; add them
here when they come), HTTP routes for principals, grants and quotas (the CLI and the config file manage those;
whoever can run them holds the store), and resource tags (TagResource, UntagResource and ListTagsForResource are
unknown operations; CreateGuardrail's `tags` are not kept).

Also here: keys are stored only as hashes and looked up by hash (the store never sees an API key; SigV4
signatures are compared with hmac.compare_digest), never logged (good, bad, revoked and malformed requests
with the server's logging at DEBUG), and SigV4 refuses a signed request replayed outside the clock-skew window
and a request whose signed headers were changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from sqlalchemy import Engine, event

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth import sigv4
from outcrop.auth.access import AccessControl
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.keys import Keyring
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.guardrails.store import GuardrailStore
from outcrop.metering.invocation_log import InvocationLogger
from outcrop.metering.quotas import QuotaRule, Quotas
from outcrop.metering.usage import UsageRecorder
from outcrop.registry import Registry
from tests.conftest import ECHO, serve_app

EARLY = "test.early-v1:0"
CLAUDE_ECHO = "anthropic.claude-3-haiku-20240307-v1:0"  # the echo model under an id InvokeModel has a body for
ANTHROPIC_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
                             "messages": [{"role": "user", "content": "Hello"}]})  # fmt: skip
HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]
M = ECHO.replace(":", "%3A")
NEVER = "zz9plural9zz"  # a guardrail id that exists nowhere


@dataclass
class Account:
    name: str
    url: str = ""
    home: Path = Path()
    engine: Engine | None = None
    keyring: Keyring | None = None
    admin: str = ""
    user: str = ""
    api: dict[str, str] = field(default_factory=dict)  # principal -> API key
    key_id: dict[str, str] = field(default_factory=dict)  # principal -> the API key's id
    aws: dict[str, tuple[str, str]] = field(default_factory=dict)  # principal -> (access key id, secret)
    guardrail: str = ""  # a guardrail with a published version 1
    guardrail_name: str = ""
    arn: str = ""
    config_id: str = ""  # the enforced guardrail configuration (account A only)
    request_id: str = ""  # an access request (account A only)

    def secrets(self) -> list[str]:
        return [*self.api.values(), *(s for _, s in self.aws.values())]


def _account(tmp: Path, name: str, admin: str, users: tuple[str, ...]) -> Account:
    a = Account(name, home=tmp, admin=admin, user=users[0])
    a.engine = store.connect(f"sqlite:///{tmp / 'outcrop.db'}")
    a.keyring = Keyring(a.engine, tmp / "secret.key")
    a.keyring.ensure_principal(admin, admin=True)
    for who in (admin, *users):
        a.key_id[who], a.api[who] = a.keyring.create_api_key(who, f"{name} key")
        a.aws[who] = a.keyring.create_aws_key(who)
    return a


def _serve(a: Account, rules: tuple[QuotaRule, ...]) -> Any:
    assert a.engine is not None and a.keyring is not None
    specs = (ModelSpec(id=ECHO, engine="echo", n_ctx=256, max_queue=16, aliases=(CLAUDE_ECHO,)),
             ModelSpec(id=EARLY, engine="echo", n_ctx=256, max_queue=16, access="early"))  # fmt: skip
    settings = Settings(config_path=a.home / "c.toml", builtin_embedding_model=False, auth="keys", models=specs)
    engines = {s.id: EchoEngine(context_length=256, max_queue=16) for s in specs}
    registry = Registry(settings, engines)  # type: ignore[arg-type]
    usage = UsageRecorder(a.engine, flush_interval_s=0.2)
    logger = InvocationLogger(a.engine, a.home, settings.region)
    logger.interval_s = 0.2
    app = build_app(settings, registry, Authenticator("keys", a.keyring),
                    AccessControl(a.engine, {s.id: s.access for s in specs}), Quotas(a.engine, rules), usage, logger,
                    GuardrailStore(a.engine))  # fmt: skip
    return serve_app(app)


def _boto(url: str, creds: tuple[str, str], service: str = "bedrock") -> Any:
    """A boto3 client signing with SigV4 that keeps the last request's Authorization header (as `.sent`) and the
    raw HTTP response to it (as `.raw`)."""
    c = boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=creds[0],
                     aws_secret_access_key=creds[1], config=Config(retries={"total_max_attempts": 1}))  # fmt: skip

    def sent(request: Any, **_: Any) -> None:
        c.sent = request.headers.get("Authorization", b"")

    def keep(http_response: Any, **_: Any) -> None:
        c.raw = http_response

    c.meta.events.register("before-send", sent)
    c.meta.events.register("after-call", keep)
    return c


def refused(client: Any, status: int, code: str, call: Callable[..., Any], **kw: Any) -> str:
    """`call(**kw)` fails with `code` in Bedrock's shape (x-amzn-ErrorType and a {"message"} body); its message."""
    with pytest.raises(ClientError) as err:
        call(**kw)
    got = err.value.response
    assert (got["ResponseMetadata"]["HTTPStatusCode"], got["Error"]["Code"]) == (status, code), got
    assert client.raw.headers["x-amzn-errortype"] == code
    body = json.loads(client.raw.content)
    assert set(body) == {"message"} and body["message"], body
    return str(body["message"])


def _http(a: Account, method: str, path: str, who: str, body: Any = None, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {a.api[who]}", "x-api-key": a.api[who], **headers}
    return httpx.request(method, a.url + path, json=body, headers=auth, timeout=60)


def bedrock_error(r: httpx.Response, status: int, code: str) -> str:
    assert (r.status_code, r.headers.get("x-amzn-errortype")) == (status, code), (r.status_code, r.text)
    assert set(r.json()) == {"message"}
    return str(r.json()["message"])


def _ids_out(message: str) -> str:
    """A message with what it quotes taken out: the answers for two ids compare equal when only the id differs."""
    return re.sub(r"'[^']*'", "'…'", message)


def _definition(name: str, word: str) -> dict[str, Any]:
    return {"name": name, "blockedInputMessaging": f"{name}: blocked input.",
            "blockedOutputsMessaging": f"{name}: blocked output.",
            "wordPolicyConfig": {"wordsConfig": [{"text": word}]}}  # fmt: skip


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Account, Account]]:
    rules = (QuotaRule(principal="ann", requests_per_minute=1),)
    a = _account(Path(tmp_path_factory.mktemp("account-a")), "A", "a-admin", ("alice", "amy", "ann"))
    b = _account(Path(tmp_path_factory.mktemp("account-b")), "B", "b-admin", ("bob",))
    with _serve(a, rules) as a.url, _serve(b, ()) as b.url:
        for acct, word in ((a, "frobnicator"), (b, "quux")):
            control = _boto(acct.url, acct.aws[acct.admin])
            acct.guardrail_name = f"secret-plans-of-{acct.name}"
            made = control.create_guardrail(**_definition(acct.guardrail_name, word))
            acct.guardrail, acct.arn = made["guardrailId"], made["guardrailArn"]
            control.create_guardrail_version(guardrailIdentifier=acct.guardrail)
        control = _boto(a.url, a.aws[a.admin])
        a.config_id = control.put_enforced_guardrail_configuration(
            guardrailInferenceConfig={"guardrailIdentifier": a.guardrail, "guardrailVersion": "1"}
        )["configId"]
        control.put_model_invocation_logging_configuration(
            loggingConfig={"s3Config": {"bucketName": "a-logs", "keyPrefix": "a"}, "textDataDeliveryEnabled": True}
        )
        made = _http(a, "POST", "/outcrop/v1/access-requests", "alice", {"modelId": EARLY, "reason": "A's plans"})
        a.request_id = made.json()["requestId"]
        # a principal default guardrail of alice's only
        alice_only = control.create_guardrail(**_definition("alice-only", "zanzibar"))["guardrailId"]
        assert a.keyring is not None and a.keyring.set_guardrail("alice", alice_only)
        time.sleep(0.5)  # logging's configuration is re-read every 0.2 s
        for acct in (a, b):  # one invocation by each account's user: usage and log records to find, or not
            _boto(acct.url, acct.aws[acct.user], "bedrock-runtime").converse(modelId=ECHO, messages=HELLO)
        yield a, b


# --- keys --------------------------------------------------------------------------------------------------


def test_a_key_of_one_account_is_unknown_to_the_other(accounts: tuple[Account, Account],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    for mine, other in (accounts, accounts[::-1]):
        for who in (mine.admin, mine.user):
            rt = _boto(other.url, mine.aws[who], "bedrock-runtime")
            refused(rt, 403, "UnrecognizedClientException", rt.converse, modelId=ECHO, messages=HELLO)
            control = _boto(other.url, mine.aws[who])
            refused(control, 403, "UnrecognizedClientException", control.list_guardrails)
            monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", mine.api[who])  # boto3 then sends it as a Bedrock API key
            bearer = _boto(other.url, ("ignored", "ignored"))
            refused(bearer, 403, "UnrecognizedClientException", bearer.list_guardrails)
            assert bytes(bearer.sent) == f"Bearer {mine.api[who]}".encode()
            monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK")
            key = {"Authorization": f"Bearer {mine.api[who]}"}
            r = httpx.get(other.url + "/outcrop/v1/keys", headers=key, timeout=60)
            bedrock_error(r, 403, "UnrecognizedClientException")
            r = httpx.post(other.url + "/v1/chat/completions", headers=key, timeout=60,
                           json={"model": ECHO, "messages": [{"role": "user", "content": "Hello"}]})  # fmt: skip
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            hi = {"model": ECHO, "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
            r = httpx.post(other.url + "/v1/messages", headers={"x-api-key": mine.api[who]}, json=hi, timeout=60)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_keys_of_another_account_cannot_be_listed_or_revoked(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    listed = _http(b, "GET", "/outcrop/v1/keys", b.admin)
    assert listed.status_code == 200
    ids = {k["keyId"] for k in listed.json()["keys"]}
    assert ids == {*b.key_id.values(), *(akid for akid, _ in b.aws.values())}
    assert not {k["principal"] for k in listed.json()["keys"]} & set(a.api)
    for key_id in (a.key_id["alice"], a.aws["alice"][0], a.key_id[a.admin]):
        # B's administrator: as a key that never existed; B's user: administrators only, whatever the id
        never = bedrock_error(_http(b, "DELETE", "/outcrop/v1/keys/key_000000000000", b.admin), 404,
                              "ResourceNotFoundException")  # fmt: skip
        found = bedrock_error(_http(b, "DELETE", f"/outcrop/v1/keys/{key_id}", b.admin), 404,
                              "ResourceNotFoundException")  # fmt: skip
        assert found == never.replace("key_000000000000", key_id)
        bedrock_error(_http(b, "DELETE", f"/outcrop/v1/keys/{key_id}", b.user), 403, "AccessDeniedException")
    bedrock_error(_http(b, "GET", "/outcrop/v1/keys", b.user), 403, "AccessDeniedException")
    # in account A, a user can neither list nor revoke another user's key (nor its own: administrators do)
    bedrock_error(_http(a, "GET", "/outcrop/v1/keys", "amy"), 403, "AccessDeniedException")
    bedrock_error(_http(a, "DELETE", f"/outcrop/v1/keys/{a.key_id['alice']}", "amy"), 403, "AccessDeniedException")
    # B's administrator making a key for a principal named like one of A's makes one of B's
    made = _http(b, "POST", "/outcrop/v1/keys", b.admin, {"principal": "alice", "admin": True}).json()
    r = httpx.get(a.url + "/outcrop/v1/keys", headers={"Authorization": f"Bearer {made['apiKey']}"}, timeout=60)
    bedrock_error(r, 403, "UnrecognizedClientException")
    assert _http(b, "DELETE", f"/outcrop/v1/keys/{made['keyId']}", b.admin).status_code == 200
    # and every key of A still works
    for who in a.api:
        assert _http(a, "GET", "/v1/models", who).status_code == 200, who


# --- guardrails ----------------------------------------------------------------------------------------------


def test_guardrails_of_another_account_are_not_found(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    admin, user = _boto(b.url, b.aws[b.admin]), _boto(b.url, b.aws[b.user])
    for control in (admin, user):  # listing and reading: B sees its own guardrails, never A's
        listed = control.list_guardrails()["guardrails"]
        assert [g["id"] for g in listed] == [b.guardrail]
        for ident in (a.guardrail, a.arn):
            assert control.list_guardrails(guardrailIdentifier=ident)["guardrails"] == []
            for version in ({}, {"guardrailVersion": "1"}):
                msg = refused(control, 404, "ResourceNotFoundException", control.get_guardrail,
                              guardrailIdentifier=ident, **version)  # fmt: skip
                assert a.guardrail_name not in msg
    # the ARN of B's own guardrail in another account's name is another account's guardrail: not found
    foreign = b.arn.replace(":000000000000:", ":111122223333:")
    refused(admin, 404, "ResourceNotFoundException", admin.get_guardrail, guardrailIdentifier=foreign)
    # changes: B's administrator gets what an id that never existed gets; B's user, administrators only, whatever
    # the id (the same answer for A's guardrail, B's own and none)
    definition = _definition("taken-over", "nothing")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("update_guardrail", definition),
        ("create_guardrail_version", {}),
        ("delete_guardrail", {"guardrailVersion": "1"}),
        ("delete_guardrail", {}),
    ]
    for name, kw in calls:
        never = refused(admin, 404, "ResourceNotFoundException", getattr(admin, name), guardrailIdentifier=NEVER, **kw)
        for ident in (a.guardrail, a.arn, foreign):
            found = refused(admin, 404, "ResourceNotFoundException", getattr(admin, name), guardrailIdentifier=ident,
                            **kw)  # fmt: skip
            assert _ids_out(found) == _ids_out(never) and a.guardrail_name not in found
        for ident in (a.guardrail, a.arn, foreign, NEVER, b.guardrail):
            refused(user, 403, "AccessDeniedException", getattr(user, name), guardrailIdentifier=ident, **kw)
    # nothing of A's changed
    mine = _boto(a.url, a.aws[a.admin])
    got = mine.get_guardrail(guardrailIdentifier=a.guardrail)
    assert got["name"] == a.guardrail_name and got["wordPolicy"]["words"] == [{"text": "frobnicator"}]
    assert [g["version"] for g in mine.list_guardrails(guardrailIdentifier=a.guardrail)["guardrails"]] == ["DRAFT", "1"]


def test_tags_on_another_accounts_guardrail_are_refused(accounts: tuple[Account, Account]) -> None:
    # TagResource, UntagResource and ListTagsForResource do not exist here (for any ARN): an unknown operation
    a, b = accounts
    for control in (_boto(b.url, b.aws[b.admin]), _boto(b.url, b.aws[b.user])):
        refused(control, 404, "UnknownOperationException", control.tag_resource, resourceARN=a.arn,
                tags=[{"key": "owner", "value": "b"}])  # fmt: skip
        refused(control, 404, "UnknownOperationException", control.untag_resource, resourceARN=a.arn,
                tagKeys=["owner"])  # fmt: skip
        refused(control, 404, "UnknownOperationException", control.list_tags_for_resource, resourceARN=a.arn)


def test_another_accounts_guardrail_cannot_be_applied(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    foreign = b.arn.replace(":000000000000:", ":111122223333:")  # B's own guardrail's id, in another account
    for who in (b.admin, b.user):
        rt = _boto(b.url, b.aws[who], "bedrock-runtime")
        text = [{"text": {"text": "frobnicator"}}]
        for version in ("1", "DRAFT"):
            never = refused(rt, 404, "ResourceNotFoundException", rt.apply_guardrail, guardrailIdentifier=NEVER,
                            guardrailVersion=version, source="INPUT", content=text)  # fmt: skip
            for ident in (a.guardrail, a.arn, foreign):
                config = {"guardrailIdentifier": ident, "guardrailVersion": version}
                calls: list[tuple[str, dict[str, Any]]] = [
                    ("apply_guardrail", {**config, "source": "INPUT", "content": text}),
                    ("converse", {"modelId": ECHO, "messages": HELLO, "guardrailConfig": config}),
                    ("converse_stream", {"modelId": ECHO, "messages": HELLO, "guardrailConfig": config}),
                    ("invoke_model", {"modelId": CLAUDE_ECHO, "body": ANTHROPIC_BODY, **config}),
                    ("invoke_model_with_response_stream", {"modelId": CLAUDE_ECHO, "body": ANTHROPIC_BODY, **config}),
                ]
                for name, kw in calls:
                    msg = refused(rt, 404, "ResourceNotFoundException", getattr(rt, name), **kw)
                    assert _ids_out(msg) == _ids_out(never) and a.guardrail_name not in msg, name
        for path, body, shape in (
            ("/v1/chat/completions", {"model": ECHO, "messages": [{"role": "user", "content": "Hello"}]}, "openai"),
            ("/v1/messages", {"model": ECHO, "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]},
             "anthropic"),
        ):  # fmt: skip
            for ref in (f"{a.guardrail}:1", a.guardrail, a.arn, f"{a.arn}:1", f"{foreign}:1"):
                for stream in (False, True):
                    r = _http(b, "POST", path, who, {**body, "stream": stream}, **{"X-Outcrop-Guardrail": ref})
                    assert r.status_code == 404, r.text
                    err = r.json()["error"]
                    if shape == "openai":
                        assert set(err) == {"message", "type", "param", "code"}
                        assert err["type"] == "invalid_request_error"
                    else:
                        assert r.json()["type"] == "error" and err["type"] == "not_found_error"
                    assert a.guardrail_name not in err["message"]
    # B's own guardrail works for B's user (the refusals above are not refusals of everything)
    rt = _boto(b.url, b.aws[b.user], "bedrock-runtime")
    out = rt.apply_guardrail(guardrailIdentifier=b.arn, guardrailVersion="1", source="INPUT",
                             content=[{"text": {"text": "quux"}}])  # fmt: skip
    assert out["action"] == "GUARDRAIL_INTERVENED"


def test_enforced_guardrail_configuration_is_the_accounts_own(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    admin, user = _boto(b.url, b.aws[b.admin]), _boto(b.url, b.aws[b.user])
    for control in (admin, user):
        assert control.list_enforced_guardrails_configuration()["guardrailsConfig"] == []
    # A's configuration is the account's: any principal of A reads it (as any may read its guardrails)
    [mine] = _boto(a.url, a.aws["amy"]).list_enforced_guardrails_configuration()["guardrailsConfig"]
    assert mine["configId"] == a.config_id
    delete = admin.delete_enforced_guardrail_configuration
    never = refused(admin, 404, "ResourceNotFoundException", delete, configId="nosuchconfig")
    found = refused(admin, 404, "ResourceNotFoundException", delete, configId=a.config_id)
    assert _ids_out(found) == _ids_out(never)
    put = admin.put_enforced_guardrail_configuration
    for ident in (a.guardrail, a.arn):
        config = {"guardrailIdentifier": ident, "guardrailVersion": "1"}
        msg = refused(admin, 404, "ResourceNotFoundException", put, guardrailInferenceConfig=config)
        assert a.guardrail_name not in msg
    own = {"guardrailIdentifier": b.guardrail, "guardrailVersion": "1"}
    refused(admin, 404, "ResourceNotFoundException", put, guardrailInferenceConfig=own, configId=a.config_id)
    amy = _boto(a.url, a.aws["amy"])  # a user of A may read A's configuration, not change it
    for client in (user, amy):
        refused(client, 403, "AccessDeniedException", client.delete_enforced_guardrail_configuration,
                configId=a.config_id)  # fmt: skip
        refused(client, 403, "AccessDeniedException", client.put_enforced_guardrail_configuration,
                guardrailInferenceConfig=own)  # fmt: skip
    assert admin.list_enforced_guardrails_configuration()["guardrailsConfig"] == []
    assert [c["configId"] for c in _boto(a.url, a.aws[a.admin]).list_enforced_guardrails_configuration()
            ["guardrailsConfig"]] == [a.config_id]  # fmt: skip
    # enforcement stays in its account, and a principal's default guardrail with its principal
    said = {"role": "user", "content": [{"text": "frobnicator"}]}
    out = _boto(b.url, b.aws[b.user], "bedrock-runtime").converse(modelId=ECHO, messages=[said])
    assert out["stopReason"] != "guardrail_intervened"
    out = _boto(a.url, a.aws["amy"], "bedrock-runtime").converse(modelId=ECHO, messages=[said])
    assert out["stopReason"] == "guardrail_intervened"
    assert out["output"]["message"]["content"][0]["text"] == f"{a.guardrail_name}: blocked input."
    said = {"role": "user", "content": [{"text": "zanzibar"}]}
    out = _boto(a.url, a.aws["amy"], "bedrock-runtime").converse(modelId=ECHO, messages=[said])
    assert out["stopReason"] != "guardrail_intervened"
    out = _boto(a.url, a.aws["alice"], "bedrock-runtime").converse(modelId=ECHO, messages=[said])
    assert out["stopReason"] == "guardrail_intervened"


# --- invocation logs, usage, metrics ----------------------------------------------------------------------


def _log_records(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted((home / "invocation-logs").rglob("*.jsonl"))
            for line in f.read_text().splitlines()]  # fmt: skip


def _wait_for_records(home: Path, test: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while not test(found := _log_records(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _who(records: list[dict[str, Any]]) -> set[str]:
    return {r["identity"]["arn"].rsplit("/", 1)[-1] for r in records}


def test_invocation_logs_of_another_account(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    admin, user = _boto(b.url, b.aws[b.admin]), _boto(b.url, b.aws[b.user])
    assert "loggingConfig" not in admin.get_model_invocation_logging_configuration()  # A's is A's
    some = {"s3Config": {"bucketName": "a-logs"}}
    for client in (user, _boto(a.url, a.aws["amy"])):  # a user of either account: administrators only
        refused(client, 403, "AccessDeniedException", client.get_model_invocation_logging_configuration)
        refused(client, 403, "AccessDeniedException", client.put_model_invocation_logging_configuration,
                loggingConfig=some)  # fmt: skip
        refused(client, 403, "AccessDeniedException", client.delete_model_invocation_logging_configuration)
    assert _boto(a.url, a.aws[a.admin]).get_model_invocation_logging_configuration()["loggingConfig"]["s3Config"] == {
        "bucketName": "a-logs", "keyPrefix": "a"}  # fmt: skip
    # B logs to a bucket of the same name: B's records go to B's delivery, never among A's
    admin.put_model_invocation_logging_configuration(loggingConfig=some)
    try:
        time.sleep(0.5)
        _boto(b.url, b.aws[b.user], "bedrock-runtime").converse(modelId=ECHO, messages=HELLO)
        _boto(a.url, a.aws["amy"], "bedrock-runtime").converse(modelId=ECHO, messages=HELLO)
        mine = _wait_for_records(b.home, lambda found: b.user in _who(found))
        theirs = _wait_for_records(a.home, lambda found: "amy" in _who(found))
    finally:
        admin.delete_model_invocation_logging_configuration()
    assert _who(mine) == {b.user} and "alice" in _who(theirs) and _who(theirs) <= set(a.api)
    text = "".join(p.read_text() for home in (a.home, b.home) for p in (home / "invocation-logs").rglob("*.jsonl"))
    for secret in a.secrets() + b.secrets():
        assert secret not in text


def test_usage_of_another_account_and_another_principal(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    r = _http(b, "GET", "/outcrop/v1/usage?groupBy=principal,model", b.admin)
    assert r.status_code == 200
    principals = {row["principal"] for row in r.json()["usage"]}
    assert b.user in principals and principals <= {b.admin, b.user}
    # a user of either account reads no usage, whatever it names: neither another's nor another account's
    for acct, who in ((b, b.user), (a, "amy"), (a, "alice")):
        for query in ("", "?groupBy=principal", "?principal=alice", "?principal=a-admin&groupBy=principal,day",
                      "?account=000000000000"):  # fmt: skip
            bedrock_error(_http(acct, "GET", "/outcrop/v1/usage" + query, who), 403, "AccessDeniedException")
        bedrock_error(_http(acct, "GET", "/metrics", who), 403, "AccessDeniedException")
        bedrock_error(_http(acct, "GET", "/outcrop/status", who), 403, "AccessDeniedException")
    rows = _http(a, "GET", "/outcrop/v1/usage?groupBy=principal", a.admin).json()["usage"]
    assert "alice" in {row["principal"] for row in rows} and not {row["principal"] for row in rows} & {b.admin, b.user}
    metrics = _http(b, "GET", "/metrics", b.admin).text
    assert not any(name in metrics for name in ("alice", "amy", "a-admin"))


def test_quotas_count_per_principal(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    ann = _boto(a.url, a.aws["ann"], "bedrock-runtime")

    def past_her_limit() -> None:  # one request a minute: the second is refused (the third, if a minute began)
        for _ in range(3):
            ann.converse(modelId=ECHO, messages=HELLO)

    refused(ann, 429, "ThrottlingException", past_her_limit)
    _boto(a.url, a.aws["amy"], "bedrock-runtime").converse(modelId=ECHO, messages=HELLO)
    _boto(b.url, b.aws[b.user], "bedrock-runtime").converse(modelId=ECHO, messages=HELLO)


# --- access requests and the administrators' routes -------------------------------------------------------


def test_access_requests_of_another_account_and_another_principal(accounts: tuple[Account, Account]) -> None:
    a, b = accounts
    for acct, who in ((b, b.admin), (b, b.user), (a, "amy")):
        r = _http(acct, "GET", "/outcrop/v1/access-requests", who)
        assert r.status_code == 200 and a.request_id not in r.text and "A's plans" not in r.text
    for decision in ("approve", "deny"):
        path = f"/outcrop/v1/access-requests/{a.request_id}/{decision}"
        found = bedrock_error(_http(b, "POST", path, b.admin, {"note": "b"}), 404, "ResourceNotFoundException")
        never = bedrock_error(_http(b, "POST", f"/outcrop/v1/access-requests/ar_000000000000/{decision}", b.admin,
                                    {"note": "b"}), 404, "ResourceNotFoundException")  # fmt: skip
        assert _ids_out(found) == _ids_out(never)
        for acct, who in ((b, b.user), (a, "amy"), (a, "alice")):
            bedrock_error(_http(acct, "POST", path, who, {"note": "self-service"}), 403, "AccessDeniedException")
    mine = _http(a, "GET", "/outcrop/v1/access-requests", "alice").json()["accessRequests"]
    assert [(r["requestId"], r["status"]) for r in mine] == [(a.request_id, "PENDING")]
    # amy's view of the model is her own: alice's pending request is not amy's
    availability = _boto(a.url, a.aws["amy"]).get_foundation_model_availability(modelId=EARLY)
    assert availability["agreementAvailability"]["status"] == "NOT_AVAILABLE"
    availability = _boto(a.url, a.aws["alice"]).get_foundation_model_availability(modelId=EARLY)
    assert availability["agreementAvailability"]["status"] == "PENDING"


# --- secrets: stored as hashes, looked up by hash, compared in constant time, never logged -----------------


def _db_bytes(acct: Account) -> bytes:
    return b"".join(p.read_bytes() for p in acct.home.glob("outcrop.db*"))  # the database, its WAL and shm


def test_the_store_never_holds_nor_is_asked_for_a_secret(accounts: tuple[Account, Account],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    a, _ = accounts
    assert a.engine is not None and a.keyring is not None
    key_id, token = a.keyring.create_api_key("amy", "fresh")  # never seen by the server: its lookup is not cached
    bad = "ocp_" + secrets.token_urlsafe(32)
    seen: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append(f"{statement} {parameters!r}")

    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def compare_digest(x: Any, y: Any) -> bool:
        compared.append((x, y))
        return real(x, y)

    monkeypatch.setattr(sigv4.hmac, "compare_digest", compare_digest)
    event.listen(a.engine, "before_cursor_execute", spy)
    try:
        assert _http(a, "GET", "/v1/models", "amy", Authorization=f"Bearer {token}").status_code == 200
        assert (
            httpx.get(a.url + "/v1/models", headers={"Authorization": f"Bearer {bad}"}, timeout=60).status_code == 401
        )
        rt = _boto(a.url, a.aws["amy"], "bedrock-runtime")
        rt.converse(modelId=ECHO, messages=HELLO)
    finally:
        event.remove(a.engine, "before_cursor_execute", spy)
    statements = "\n".join(seen)
    for secret in (token, bad, a.aws["amy"][1]):
        assert secret not in statements
    # API keys are looked up by their SHA-256 (the database compares digests, never the key)
    assert hashlib.sha256(token.encode()).hexdigest() in statements
    assert hashlib.sha256(bad.encode()).hexdigest() in statements
    # SigV4's payload hash and signature are compared with hmac.compare_digest (the signature: 64 hex digits)
    assert any(isinstance(x, str) and len(x) == 64 for x, _ in compared), compared
    # on disk: neither account's database holds a key or an AWS secret, only digests and ciphertext
    for acct in accounts:
        raw = _db_bytes(acct)
        for secret in acct.secrets() + ([token] if acct is a else []):
            assert secret.encode() not in raw
        assert hashlib.sha256(acct.api[acct.user].encode()).hexdigest().encode() in raw
    assert a.keyring.revoke(key_id)


CLIENT_SIDE = ("httpx", "httpcore", "botocore", "urllib3", "boto3")


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_SIDE):  # the test's own clients log through the same root logger
            return
        self.text.append(self.format(record))
        self.text.append(repr(record.args) + repr(record.__dict__.get("scope", "")))


def test_keys_are_never_logged(accounts: tuple[Account, Account], capfd: pytest.CaptureFixture[str]) -> None:
    a, b = accounts
    assert a.keyring is not None
    revoked_id, revoked = a.keyring.create_api_key("amy", "to revoke")
    a.keyring.revoke(revoked_id)
    handler = _Captured()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    names = ("", "outcrop", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy")  # SQL and its parameters too
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    bad = "ocp_" + secrets.token_urlsafe(32)
    chat = {"model": ECHO, "messages": [{"role": "user", "content": "Hello"}]}
    try:
        for token in (a.api["alice"], bad, revoked, a.api[a.admin]):
            for path, body in (("/v1/chat/completions", chat), ("/v1/messages", {**chat, "max_tokens": 5}),
                               (f"/model/{M}/converse", {"messages": HELLO}), ("/outcrop/v1/keys", None),
                               ("/outcrop/v1/usage", None)):  # fmt: skip
                for header in ({"Authorization": f"Bearer {token}"}, {"x-api-key": token}):
                    httpx.request("POST" if body else "GET", a.url + path, json=body, headers=header, timeout=60)
            httpx.get(b.url + "/outcrop/v1/keys", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        # SigV4, right and wrong secrets (the secret never travels; its signature does)
        _boto(a.url, a.aws["alice"], "bedrock-runtime").converse(modelId=ECHO, messages=HELLO)
        wrong = _boto(a.url, (a.aws["alice"][0], a.aws["amy"][1]), "bedrock-runtime")
        refused(wrong, 403, "InvalidSignatureException", wrong.converse, modelId=ECHO, messages=HELLO)
        # a request that is not HTTP, with a key in its head
        where = urlsplit(a.url)
        with socket.create_connection((str(where.hostname), int(where.port or 80))) as s:
            s.sendall(f"GET /v1/models HTTP/1.1\r\nAuthorization: Bearer {a.api['alice']}\r\n\x00bad\r\n\r\n".encode())
            s.settimeout(10)
            s.recv(65536)
        time.sleep(0.5)  # invocation log records and key-use writes happen off the request's path
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    out, err = capfd.readouterr()
    logged = "\n".join(handler.text) + out + err
    assert any(t.startswith("sqlalchemy.engine") for t in handler.text)  # the capture saw the server at work
    for secret in (*a.secrets(), *b.secrets(), bad, revoked):
        assert secret not in logged
    records = "".join(p.read_text() for p in (a.home / "invocation-logs").rglob("*.jsonl"))
    for secret in (*a.secrets(), bad, revoked):
        assert secret not in records


# --- SigV4: replays outside the clock-skew window, changed signed headers ----------------------------------


def _sign(url: str, creds: tuple[str, str], headers: dict[str, str], body: bytes,
          at: dt.datetime | None = None) -> dict[str, str]:  # fmt: skip
    import botocore.auth

    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    real = botocore.auth.get_current_datetime
    if at is not None:
        botocore.auth.get_current_datetime = lambda: at  # type: ignore[assignment]
    try:
        SigV4Auth(Credentials(*creds), "bedrock", "us-east-1").add_auth(request)
    finally:
        botocore.auth.get_current_datetime = real
    return dict(request.headers.items())


def test_sigv4_replays_outside_the_window_are_refused(accounts: tuple[Account, Account]) -> None:
    a, _ = accounts
    url = f"{a.url}/model/{M}/converse"
    body = json.dumps({"messages": HELLO}).encode()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    signed = _sign(url, a.aws["alice"], {"Content-Type": "application/json"}, body)
    # the same signed request twice within the window: SigV4 carries no nonce, so as on AWS both are answered
    for _ in range(2):
        assert httpx.post(url, content=body, headers=signed, timeout=60).status_code == 200
    for minutes, ok in ((-14, True), (14, True), (-16, False), (16, False), (-60 * 24, False)):
        headers = _sign(url, a.aws["alice"], {"Content-Type": "application/json"}, body,
                        now + dt.timedelta(minutes=minutes))  # fmt: skip
        r = httpx.post(url, content=body, headers=headers, timeout=60)
        if ok:
            assert r.status_code == 200, (minutes, r.text)
        else:
            assert "expired" in bedrock_error(r, 403, "InvalidSignatureException"), minutes


def test_sigv4_changed_signed_headers_are_refused(accounts: tuple[Account, Account]) -> None:
    a, _ = accounts
    url = f"{a.url}/model/{CLAUDE_ECHO.replace(':', '%3A')}/invoke"
    body = ANTHROPIC_BODY.encode()
    original = {"Content-Type": "application/json", "Accept": "application/json",
                "X-Amzn-Bedrock-GuardrailIdentifier": a.guardrail, "X-Amzn-Bedrock-GuardrailVersion": "1",
                "X-Amzn-Bedrock-Trace": "ENABLED"}  # fmt: skip
    signed = _sign(url, a.aws["alice"], original, body)
    assert "x-amzn-bedrock-guardrailidentifier" in signed["Authorization"]
    assert httpx.post(url, content=body, headers=signed, timeout=60).status_code == 200
    later = dt.datetime.strptime(signed["X-Amz-Date"], "%Y%m%dT%H%M%SZ") + dt.timedelta(seconds=1)
    changes: list[dict[str, str | None]] = [
        {"X-Amzn-Bedrock-GuardrailIdentifier": "zz9plural9zz"},
        {"X-Amzn-Bedrock-GuardrailIdentifier": None},  # dropped
        {"X-Amzn-Bedrock-GuardrailVersion": "DRAFT"},
        {"X-Amzn-Bedrock-Trace": "DISABLED"},
        {"Content-Type": "text/plain"},
        {"Accept": "application/xml"},
        {"X-Amz-Date": later.strftime("%Y%m%dT%H%M%SZ")},
        {"Host": "127.0.0.1:1"},
    ]
    for change in changes:
        headers = {k: v for k, v in {**signed, **change}.items() if v is not None}
        r = httpx.post(url, content=body, headers=headers, timeout=60)
        bedrock_error(r, 403, "InvalidSignatureException")
