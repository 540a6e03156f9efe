"""Fuzz every route a running server publishes, with schemathesis: the OpenAI, Anthropic and Outcrop routes from
`/openapi.json`, the Bedrock routes from `/openapi/bedrock.json` (generated from botocore's service models).
Cases that fit the documents (positive) and cases that break them (negative) are sent over HTTP; every answer
must be below 500 and, when it is a refusal, in the envelope of the API the route belongs to; the server's log
must hold no traceback. Failures are collected, not raised, so a run counts them all.

Used by tests/api/test_fuzz.py (a small budget, in CI) and benchmarks/fuzz.py (a longer run that prints its
figures)."""

from __future__ import annotations

import copy
import json
import logging
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from schemathesis import GenerationMode

LOGGERS = ("", "uvicorn", "uvicorn.error", "outcrop")


@dataclass
class Finding:
    api: str
    operation: str
    mode: str
    problem: str
    request: str


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0


class Tracebacks(logging.Handler):
    """Every log record that carries an exception (a traceback in the server's log)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.records.append(record)

    def __enter__(self) -> Tracebacks:
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self)


def api_of(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith(("/outcrop/", "/healthz", "/metrics", "/openapi")):
        return "outcrop"
    return "bedrock"


def _pin(doc: dict[str, Any], values: dict[str, list[str]]) -> dict[str, Any]:
    """Path parameters and `model` members named in `values` take only those values in positive cases (a random
    model id is refused before anything interesting runs); negative cases still break them."""
    doc = copy.deepcopy(doc)
    for ops in doc["paths"].values():
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["name"] in values:
                    p["schema"] = {"type": "string", "enum": values[p["name"]]}
    for schema in doc.get("components", {}).get("schemas", {}).values():
        props = schema.get("properties", {})
        if "model" in props and "model" in values:
            props["model"] = {"type": "string", "enum": values["model"]}
    return doc


def envelope_problem(api: str, response: Any) -> str | None:
    """What is wrong with a refusal's envelope for `api`, or None. (schemathesis's responses have lower-case header
    names, each with a list of values.)"""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} without a JSON body: {response.text[:200]!r}"
    if api in ("bedrock", "outcrop"):
        if not response.headers.get("x-amzn-errortype") or not isinstance(body.get("message"), str):
            return f"HTTP {response.status_code} not in Bedrock's envelope: {body}"
    elif api == "openai":
        if not isinstance(body.get("error"), dict) or not isinstance(body["error"].get("message"), str):
            return f"HTTP {response.status_code} not in OpenAI's envelope: {body}"
    elif body.get("type") != "error" or not isinstance(body.get("error"), dict):
        return f"HTTP {response.status_code} not in Anthropic's envelope: {body}"
    return None


def fuzz(base_url: str, pins: dict[str, list[str]], max_examples: int, headers: dict[str, str] | None = None,
         modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)) -> Tally:  # fmt: skip
    tally = Tally()
    started = time.monotonic()
    session = requests.Session()
    with Tracebacks() as tracebacks:
        for doc_path in ("/openapi.json", "/openapi/bedrock.json"):
            doc = _pin(httpx.get(base_url + doc_path, timeout=30).json(), pins)
            schema = schemathesis.openapi.from_dict(doc)
            for result in schema.get_all_operations():
                operation = result.ok()
                api = api_of(operation.path)
                for mode in modes:
                    _run(operation, api, mode, base_url, session, headers or {}, max_examples, tally)
        for record in tracebacks.records:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                where = traceback.extract_tb(exc.__traceback__)[-1]
                text += f": {type(exc).__name__}: {exc} at {where.filename}:{where.lineno}"
            tally.findings.append(Finding("server", record.name, "-", f"traceback in the log: {text[:600]}", ""))
    tally.seconds = time.monotonic() - started
    return tally


def _run(operation: Any, api: str, mode: GenerationMode, base_url: str, session: requests.Session,
         headers: dict[str, str], max_examples: int, tally: Tally) -> None:  # fmt: skip
    label = f"{operation.method.upper()} {operation.path}"

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
              verbosity=Verbosity.quiet)  # fmt: skip
    @given(operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=60)
        except requests.RequestException as exc:
            tally.findings.append(Finding(api, label, mode.value, f"no answer: {exc}", _describe(case)))
            return
        tally.cases[api] += 1
        tally.statuses[str(response.status_code)] += 1
        problem = envelope_problem(api, response)
        if problem:
            tally.findings.append(Finding(api, label, mode.value, problem, _describe(case)))

    try:
        one()
    except Exception as exc:  # schemathesis could not build cases for this operation: worth knowing, not fatal
        if "Unsatisfiable" not in type(exc).__name__:
            tally.findings.append(Finding(api, label, mode.value, f"generation failed: {exc!r}"[:300], ""))


def _describe(case: Any) -> str:
    body = case.body if not isinstance(case.body, bytes) else case.body[:200]
    text = json.dumps(body, default=str)[:400] if body is not None else ""
    return f"{case.method} {case.formatted_path} query={case.query} body={text}"
