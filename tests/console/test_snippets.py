""" "Show code" (snippets.py): the boto3, openai and curl programs run, unchanged, against a real server and get the
playground's answer."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from typing import Any

import boto3
import pytest

from outcrop.console.chat import decode
from outcrop.console.snippets import converse_body, snippets
from outcrop.models import BUILTIN_MODEL_ID
from tests.console.conftest import Served, signed_in

BODY = {"model": BUILTIN_MODEL_ID, "system": "", "temperature": 0, "topP": 0.9, "maxTokens": 64,
        "messages": [{"role": "user", "text": "What is the capital of France?"}]}  # fmt: skip
ANSWER = "The capital of France is Paris."


def _run_python(code: str) -> str:
    # A pasted program starts a fresh process: boto3's default session must not carry credentials an earlier test
    # in this process resolved (it caches them once found).
    boto3.DEFAULT_SESSION = None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<snippet>", "exec"), {})  # the snippet as a user would paste it
    return out.getvalue().strip()


@pytest.mark.parametrize("client", ["boto3", "openai"])
def test_the_python_snippets_run_against_the_server_in_local_mode(base_url: str, client: str) -> None:
    code = snippets(decode(BODY), base_url, keys=False)[client]
    assert _run_python(code) == ANSWER


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_the_curl_snippet_runs_against_the_server(base_url: str) -> None:
    code = snippets(decode(BODY), base_url, keys=False)["curl"]
    out = subprocess.run(["sh", "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out)["output"]["message"]["content"][0]["text"] == ANSWER


def test_with_keys_the_snippets_read_the_key_from_the_environment(keyed: Served, console: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    c = signed_in(console, keyed, "alice")
    r = c.post_json("/console/playground/code", BODY)
    assert r.status_code == 200
    code = r.json()
    assert all(keyed.keys["alice"] not in text for text in code.values())
    assert 'os.environ["OUTCROP_API_KEY"]' in code["openai"] and "$OUTCROP_API_KEY" in code["curl"]
    assert code["boto3"].count(keyed.url) == 1 and "AWS_ACCESS_KEY_ID" in code["boto3"]
    monkeypatch.setenv("OUTCROP_API_KEY", keyed.keys["alice"])
    assert _run_python(code["openai"]) == ANSWER
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keyed.aws[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keyed.aws[1])
    assert _run_python(code["boto3"]) == ANSWER


def test_a_guardrail_and_a_system_prompt_go_into_every_snippet() -> None:
    body = decode({**BODY, "system": "Be brief.", "guardrail": {"id": "gr1", "version": "2"}})
    code = snippets(body, "http://127.0.0.1:8300", keys=False)
    assert converse_body(body)["guardrailConfig"] == {"guardrailIdentifier": "gr1", "guardrailVersion": "2",
                                                      "trace": "enabled"}  # fmt: skip
    assert 'system=[{"text": "Be brief."}]' in code["boto3"]
    assert (
        '"X-Outcrop-Guardrail": "gr1:2"' in code["openai"]
        and '{"role": "system", "content": "Be brief."}' in code["openai"]
    )
    assert "/model/outcrop.tiny-chat-v1%3A0/converse" in code["curl"] and '"guardrailVersion": "2"' in code["curl"]


def test_quotes_and_newlines_in_the_conversation_survive_every_snippet(base_url: str) -> None:
    tricky = 'it\'s "quoted"\nand $HOME `here`'
    body = decode({**BODY, "model": "test.echo-v1:0", "maxTokens": None, "topP": None,
                   "messages": [{"role": "user", "text": tricky}]})  # fmt: skip
    code = snippets(body, base_url, keys=False)
    compile(code["boto3"], "<boto3>", "exec")
    compile(code["openai"], "<openai>", "exec")
    if shutil.which("curl"):
        out = subprocess.run(["sh", "-c", code["curl"]], capture_output=True, text=True, timeout=60, check=True)
        assert "$HOME" in out.stdout and "`here`" in out.stdout  # the shell expanded nothing
