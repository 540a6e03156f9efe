"""Guardrail latency: what ApplyGuardrail costs per policy, and what a guardrail adds to a streamed Converse.

What it measures
    A real `outcrop serve` (uvicorn on 127.0.0.1, started by this script in a subprocess with a
    temporary config that turns on the built-in tiny chat model, outcrop.tiny-chat-v1:0, and the
    built-in embedding model, all-MiniLM-L6-v2, which the content filters, denied topics and
    grounding run on). The guardrails are created with boto3's bedrock client (CreateGuardrail, then
    CreateGuardrailVersion; every call below uses version 1) before anything is timed:

    * all policies: the six content filters at HIGH (PROMPT_ATTACK on input only, as Bedrock
      requires), three denied topics with definitions and examples, custom words and the managed
      PROFANITY list, every PII entity type of botocore's GuardrailPiiEntityType enum (secrets and
      financial numbers BLOCK, the rest ANONYMIZE) plus a custom regex, and contextual grounding
      (GROUNDING 0.5 and RELEVANCE 0.5, which Bedrock runs on OUTPUT only);
    * each of those policies alone (content filters, denied topics, words, PII, grounding);
    * the floor: one custom word, so the call does nothing but HTTP, JSON, validation, routing, the
      guardrail lookup and one regex.

    1. ApplyGuardrail. POST /guardrail/{id}/version/1/apply over one keep-alive http.client
       connection (the client is this process, the server another), timed from sending the JSON body
       (built before the clock starts) to the parsed reply. The content is three blocks: a ~200-word
       answer about a library's renovation (qualifier guard_content: the text checked), the document
       it is based on (grounding_source) and the question it answers (query); the same body for
       every row, so the rows differ only in the guardrail -- except that every call works its own
       call number into every sentence: the server keeps the vectors of recently embedded texts (a
       conversation's earlier turns are re-checked every turn), and sending identical sentences
       would time that cache instead of the classifiers. One informational row does send the same
       texts every call, to show what the cache saves. Two variants of the answer: benign, and the
       same with one more sentence holding an e-mail address and a phone number (which PII
       ANONYMIZEs). Each row runs with source INPUT except grounding (OUTPUT: Bedrock skips
       grounding on INPUT); the all-policies guardrail runs with both, since INPUT adds
       PROMPT_ATTACK and OUTPUT adds grounding. The table gives n, p50, p90 and p99 in ms, the ratio
       to the floor and the p50 the policy adds over the floor, the server's own
       guardrailProcessingLatency (the assessment's invocationMetrics, whole ms, p50), and the
       action the guardrail answered (NONE, GUARDRAIL_INTERVENED masked, ... BLOCKED). The target,
       p50 <= 20 ms with all policies on, is printed next to the all-policies rows.

       Every row is called up to --warmup times first (the first calls load MiniLM, presidio and
       the classifier). Then rounds visit every row, in an order rotated every round; a visit runs
       up to --block calls, or fewer once it has run for 0.5 s, so cheap rows run in blocks and
       expensive ones alternate call by call, and drift falls on all rows alike. The rows cost from
       about a millisecond to seconds on 2 cores, so each row stops after -n calls or once its
       timed calls add up to --row-seconds (with at least --min-requests): the n column differs
       from row to row, and the p99 of a row with fewer than 100 calls is near its maximum.

    2. Converse with a guardrail, streamed. POST /model/<id>/converse-stream read over http.client
       as it arrives and split into event-stream messages with botocore's EventStreamBuffer, timed
       on the client: TTFT (request sent -> first contentBlockDelta), total (-> the stream's end),
       decode tokens/s (output tokens after the first / first -> last contentBlockDelta; "-" when
       the text came in one delta) and end-to-end tokens/s (output tokens / total). Paths: no
       guardrail (the baseline), the all-policies guardrail with streamProcessingMode sync, and
       async; and, unless --no-grounding-path, the all-policies guardrail without its grounding
       policy in sync mode (info): grounding judges the whole answer, so a guardrail with grounding
       makes sync mode hold the whole text block back, while without it sync releases text in
       ~200-character checked chunks (outcrop/guardrails/runtime.py). Runs alternate (A B C D,
       D C B A, ...) after one short untimed run on each path. Two models:

       * the tiny model's "Count from one to twenty." (outcrop.models.tiny_script COUNT_ANSWER,
         temperature 0): a short answer, so TTFT and total matter more than tokens/s;
       * if benchmarks/.models/qwen2.5-0.5b-shape-q8_0.gguf exists (scripts/build_bench_model.py),
         128 tokens per run on that random-weight Qwen2.5-0.5B-shaped Q8_0 model
         (additionalModelRequestFields {"ignore_eos": true}, maxTokens 128). The system prompt
         starts with the run's own number, so no run reuses a cached prompt prefix (a guardrail
         does not check a system prompt, as in Bedrock); the user's text, which it checks, is the
         same in every run. The model's text is gibberish: a guardrail may intervene on it, which
         the stop-reason column shows (and a WARNING below the table).

       The input check (the user's text through every INPUT policy) comes before the model starts,
       in both modes; the output check runs on the held-back chunks (sync) or alongside (async).

    The model files' pages are pinned in memory (mmap + mlock, see _common.pinned_in_memory;
    --no-pin to skip). Nothing is asserted: it is a measurement, and the script prints how much CPU
    other processes used while it ran.

How to run
    python benchmarks/guardrails_latency.py                 # ~2-3 min on 2 quiet cores
    python benchmarks/guardrails_latency.py --row-seconds 2 --tiny-reps 5 --no-qwen    # quicker, coarser
    python benchmarks/guardrails_latency.py -n 1000 --row-seconds 60 --reps 6          # finer figures

    -n and --row-seconds bound the timed ApplyGuardrail calls per row; --tiny-reps and --reps are
    the streamed runs per path on the tiny model and on the 0.5B-shape model.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ROOT,
    CpuWatch,
    JsonHttp,
    converse_stream,
    foreign_cpu_note,
    machine_summary,
    median,
    outcrop_server,
    percentile,
    pinned_in_memory,
    server_log_tail,
    table,
)

from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID
from outcrop.models.tiny_script import COUNT_ANSWER

TARGET_P50_MS = 20.0
QWEN_ID = "bench.qwen2-5-0-5b-shape-v1:0"
QWEN_MODEL = ROOT / "benchmarks" / ".models" / "qwen2.5-0.5b-shape-q8_0.gguf"
VERSION = "1"
COUNT_PROMPT = "Count from one to twenty."
# The 0.5B-shape model's conversation: the system prompt (which a guardrail does not check, as in Bedrock)
# starts with the run's number, so that no run reuses a cached prompt prefix; the checked user text is fixed.
QWEN_SYSTEM = "You are a helpful assistant. Answer in plain prose, with no lists and no headings."
QWEN_PROMPT = "Write a short story about a dog who finds a brass key in the park."
VISIT_S = 0.5  # a visit to an ApplyGuardrail row ends after this long (or --block calls)

# --- the texts -----------------------------------------------------------------------------------

SOURCE = (
    "Riverside Public Library renovation notice. The main building on Alder Street will close on "
    "March 3 for a renovation that is expected to last fourteen weeks. During the closure, the "
    "mobile library van will stop at Harbor Park every Tuesday and Thursday from 10 am to 4 pm, and "
    "the Eastgate branch will extend its opening hours until 8 pm on weekdays. Books that are due "
    "during the closure can be returned to the Eastgate branch or to the drop box outside the main "
    "building, which stays open. The renovation adds a quiet study floor with forty desks, a "
    "children's reading room with a puppet theatre, new accessible entrances on both sides of the "
    "building, and solar panels on the roof that should cover about a third of the building's "
    "electricity. The reopening is planned for the second week of June, with a community open day "
    "on Saturday, June 14."
)
QUERY = "What is changing at the Riverside library, and where can I borrow books while it is closed?"
ANSWER = (
    "The main Riverside Public Library building on Alder Street closes on March 3 for a renovation "
    "of about fourteen weeks, and it is planned to reopen in the second week of June. While it is "
    "closed you can still borrow and return books in two places. The mobile library van stops at "
    "Harbor Park every Tuesday and Thursday between 10 am and 4 pm, and the Eastgate branch stays "
    "open until 8 pm on weekdays for the whole closure. If a book falls due while the main building "
    "is shut, you can return it at Eastgate or use the drop box outside the main building, which "
    "remains available the entire time. When the library reopens it will have a quiet study floor "
    "with forty desks for students and remote workers, a new children's reading room that includes "
    "a small puppet theatre, and accessible entrances on both sides of the building, so that "
    "visitors using wheelchairs or pushing prams no longer need to go around to the back. Solar "
    "panels are also being installed on the roof, and they should supply roughly a third of the "
    "building's electricity. Everyone is invited to a community open day on Saturday, June 14, to "
    "see the new spaces, meet the staff and sign up for the summer reading programme."
)
CONTACT = (
    " If anything is unclear, e-mail the branch manager at m.okafor@riverside-library.org or call "
    "(206) 437-9152 during opening hours."
)
TEXTS = {"benign": ANSWER, "email+phone": ANSWER + CONTACT}

# --- the guardrails ------------------------------------------------------------------------------

BLOCKED_IN = "Sorry, I can't help with that request."
BLOCKED_OUT = "Sorry, I can't share that answer."
CONTENT = {
    "filtersConfig": [
        *({"type": t, "inputStrength": "HIGH", "outputStrength": "HIGH"}
          for t in ("HATE", "INSULTS", "SEXUAL", "VIOLENCE", "MISCONDUCT")),
        {"type": "PROMPT_ATTACK", "inputStrength": "HIGH", "outputStrength": "NONE"},
    ]
}  # fmt: skip
TOPICS = {
    "topicsConfig": [
        {
            "name": "Investment advice",
            "definition": "Recommendations or guidance about buying, selling or holding stocks, bonds, "
            "funds, cryptocurrencies or other investments to make money.",
            "examples": [
                "Which stocks should I buy this year?",
                "Is now a good time to put my savings into bitcoin?",
                "Should I move my pension into an index fund?",
            ],
            "type": "DENY",
        },
        {
            "name": "Medical diagnosis",
            "definition": "Telling a person which illness or condition they have, or which medicine or "
            "dose they should take, based on their symptoms.",
            "examples": [
                "I have a headache and a stiff neck, what disease do I have?",
                "How many milligrams of ibuprofen should I give my child?",
            ],
            "type": "DENY",
        },
        {
            "name": "Election campaigning",
            "definition": "Persuading people to vote for or against a political party, candidate or "
            "ballot measure in an election.",
            "examples": [
                "Who should I vote for in the mayoral election?",
                "Write a speech urging people to vote against Proposition 12.",
            ],
            "type": "DENY",
        },
    ]
}
WORDS = {
    "wordsConfig": [{"text": "frobnicator"}, {"text": "Project Nightingale"}, {"text": "competitor discount code"}],
    "managedWordListsConfig": [{"type": "PROFANITY"}],
}
# Secrets and numbers that move money are blocked; everything else is masked.
PII_BLOCK = frozenset(
    {
        "AWS_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "PASSWORD",
        "PIN",
        "CREDIT_DEBIT_CARD_NUMBER",
        "CREDIT_DEBIT_CARD_CVV",
        "CREDIT_DEBIT_CARD_EXPIRY",
        "US_SOCIAL_SECURITY_NUMBER",
        "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
        "US_BANK_ACCOUNT_NUMBER",
        "US_BANK_ROUTING_NUMBER",
        "SWIFT_CODE",
    }
)
GROUNDING = {"filtersConfig": [{"type": "GROUNDING", "threshold": 0.5}, {"type": "RELEVANCE", "threshold": 0.5}]}


def pii_entity_types() -> list[str]:
    """Every value of Bedrock's GuardrailPiiEntityType, from botocore's service model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("bedrock")
    return list(model.shape_for("GuardrailPiiEntityType").enum)


def sensitive_policy(types: list[str]) -> dict[str, Any]:
    return {
        "piiEntitiesConfig": [{"type": t, "action": "BLOCK" if t in PII_BLOCK else "ANONYMIZE"} for t in types],
        "regexesConfig": [{"name": "ticket", "pattern": r"\bTCK-\d{6}\b", "action": "ANONYMIZE"}],
    }


def definitions(types: list[str]) -> dict[str, dict[str, Any]]:
    """CreateGuardrail bodies, by key."""
    sensitive = sensitive_policy(types)
    every = {
        "contentPolicyConfig": CONTENT,
        "topicPolicyConfig": TOPICS,
        "wordPolicyConfig": WORDS,
        "sensitiveInformationPolicyConfig": sensitive,
        "contextualGroundingPolicyConfig": GROUNDING,
    }
    without_grounding = {k: v for k, v in every.items() if k != "contextualGroundingPolicyConfig"}
    policies: dict[str, dict[str, Any]] = {
        "floor": {"wordPolicyConfig": {"wordsConfig": [{"text": "frobnicator"}]}},
        "words": {"wordPolicyConfig": WORDS},
        "pii": {"sensitiveInformationPolicyConfig": sensitive},
        "content": {"contentPolicyConfig": CONTENT},
        "topics": {"topicPolicyConfig": TOPICS},
        "grounding": {"contextualGroundingPolicyConfig": GROUNDING},
        "all": every,
        "all-but-grounding": without_grounding,
        # the CLASSIC tier: content filters, topics and (following the content tier) grounding on static embeddings
        "content-classic": {"contentPolicyConfig": {**CONTENT, "tierConfig": {"tierName": "CLASSIC"}}},
        "all-classic": {
            **every,
            "contentPolicyConfig": {**CONTENT, "tierConfig": {"tierName": "CLASSIC"}},
            "topicPolicyConfig": {**TOPICS, "tierConfig": {"tierName": "CLASSIC"}},
        },
    }
    return {
        key: {
            "name": f"bench-{key}",
            "blockedInputMessaging": BLOCKED_IN,
            "blockedOutputsMessaging": BLOCKED_OUT,
            **body,
        }
        for key, body in policies.items()
    }


def create_guardrails(url: str, types: list[str]) -> dict[str, str]:
    """The guardrails above through boto3's bedrock client, each published as version 1; key -> id."""
    import boto3
    from botocore.config import Config

    control = boto3.client(
        "bedrock",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    ids = {}
    for key, body in definitions(types).items():
        gid = control.create_guardrail(**body)["guardrailId"]
        version = control.create_guardrail_version(guardrailIdentifier=gid)["version"]
        if version != VERSION:
            raise RuntimeError(f"guardrail {key}: expected version {VERSION}, got {version}")
        ids[key] = gid
    return ids


def builtins_on(tmp: Path) -> None:
    """_common.config_toml writes a config without the built-in models; this benchmark needs both."""
    cfg = tmp / "config.toml"
    text = cfg.read_text()
    for key in ("builtin_model", "builtin_embedding_model"):
        if f"{key} = false\n" not in text:
            raise RuntimeError(f"unexpected config from _common.config_toml: no '{key} = false'")
        text = text.replace(f"{key} = false\n", f"{key} = true\n", 1)
    cfg.write_text(text)


# --- 1. ApplyGuardrail ---------------------------------------------------------------------------


_CALLS = itertools.count()


def _fresh(text: str, n: int) -> str:
    """`text` with call number `n` worked into every sentence: the server keeps the vectors of texts it has
    recently embedded, and a benchmark that sent the same sentences again would time that cache."""
    return " ".join(f"{s} (#{n})" for s in re.split(r"(?<=[.!?])\s+", text))


def apply_body(text: str, source: str, cached: bool = False) -> dict[str, Any]:
    n = next(_CALLS)
    return {
        "source": source,
        "content": [
            {"text": {"text": SOURCE if cached else _fresh(SOURCE, n), "qualifiers": ["grounding_source"]}},
            {"text": {"text": QUERY if cached else _fresh(QUERY, n), "qualifiers": ["query"]}},
            {"text": {"text": text if cached else _fresh(text, n), "qualifiers": ["guard_content"]}},
        ],
    }


@dataclass
class ApplyPath:
    name: str
    key: str  # which guardrail
    source: str
    text: str  # key of TEXTS
    cached: bool = False  # the same texts every call (the server's vector cache answers) instead of fresh ones
    times: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    actions: set[str] = field(default_factory=set)


class ApplyHttp(JsonHttp):
    """ApplyGuardrail over one keep-alive http.client connection."""

    def call(self, gid: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.post(f"/guardrail/{gid}/version/{VERSION}/apply", body)  # type: ignore[no-any-return]


def outcome(reply: dict[str, Any]) -> str:
    """NONE, or GUARDRAIL_INTERVENED with what the guardrail did (masked / blocked, and by which policy)."""
    if reply["action"] == "NONE":
        return "NONE"
    assessment = reply["assessments"][0]
    names = {"topicPolicy": "topics", "contentPolicy": "content", "wordPolicy": "words",
             "sensitiveInformationPolicy": "PII", "contextualGroundingPolicy": "grounding"}  # fmt: skip
    did: dict[str, set[str]] = {}
    for key, label in names.items():
        for entries in (assessment.get(key) or {}).values():
            for e in entries:
                if e.get("action") in ("BLOCKED", "ANONYMIZED"):
                    did.setdefault(e["action"].lower(), set()).add(label)
    parts = [f"{a} ({', '.join(sorted(p))})" for a, p in sorted(did.items())]
    return "INTERVENED: " + "; ".join(parts) if parts else "INTERVENED"


def apply_paths(n_types: int) -> list[ApplyPath]:
    pii = f"PII: {n_types} types + 1 regex"
    return [
        ApplyPath("floor: 1 custom word (baseline)", "floor", "INPUT", "benign"),
        ApplyPath("words: 3 custom + PROFANITY", "words", "INPUT", "benign"),
        ApplyPath(pii, "pii", "INPUT", "benign"),
        ApplyPath(pii, "pii", "INPUT", "email+phone"),
        ApplyPath("content filters: 6 at HIGH", "content", "INPUT", "benign"),
        ApplyPath("denied topics: 3", "topics", "INPUT", "benign"),
        ApplyPath("grounding + relevance", "grounding", "OUTPUT", "benign"),
        ApplyPath("ALL policies", "all", "INPUT", "benign"),
        ApplyPath("ALL policies", "all", "INPUT", "email+phone"),
        ApplyPath("ALL policies", "all", "OUTPUT", "benign"),
        ApplyPath("ALL policies", "all", "OUTPUT", "email+phone"),
        ApplyPath("content filters: 6 at HIGH, CLASSIC", "content-classic", "INPUT", "benign"),
        ApplyPath("ALL policies, CLASSIC", "all-classic", "INPUT", "benign"),
        ApplyPath("ALL policies, CLASSIC", "all-classic", "INPUT", "email+phone"),
        ApplyPath("ALL policies, CLASSIC", "all-classic", "OUTPUT", "benign"),
        ApplyPath("ALL policies, CLASSIC", "all-classic", "OUTPUT", "email+phone"),
        ApplyPath("ALL policies, same text again (cached)", "all", "OUTPUT", "benign", cached=True),
    ]


def run_apply(
    server: Any, ids: dict[str, str], n_types: int, args: argparse.Namespace
) -> tuple[list[ApplyPath], float | None]:
    paths = apply_paths(n_types)
    client = ApplyHttp(server.host, server.port, timeout_s=120)

    def call(p: ApplyPath) -> tuple[float, dict[str, Any]]:
        body = apply_body(TEXTS[p.text], p.source, cached=p.cached)  # built before the clock starts
        t0 = time.perf_counter_ns()
        reply = client.call(ids[p.key], body)
        return (time.perf_counter_ns() - t0) / 1e6, reply

    t_warm = time.perf_counter()
    for p in paths:  # the first calls load presidio, MiniLM and the classifier
        spent = time.perf_counter()
        for _ in range(args.warmup):
            call(p)
            if time.perf_counter() - spent > VISIT_S:
                break
    print(f"ApplyGuardrail warm-up: {time.perf_counter() - t_warm:.1f}s", flush=True)

    def done(p: ApplyPath) -> bool:
        return len(p.times) >= args.requests or (
            len(p.times) >= args.min_requests and sum(p.times) >= args.row_seconds * 1000
        )

    watch, timed_from = CpuWatch(server.process.pid), time.perf_counter()
    i = 0
    while not all(done(p) for p in paths):
        k = i % len(paths)
        i += 1
        for p in paths[k:] + paths[:k]:
            visit = time.perf_counter()
            for _ in range(args.block):  # a block of calls, cut short after VISIT_S: expensive rows alternate
                if done(p) or time.perf_counter() - visit > VISIT_S:
                    break
                elapsed, reply = call(p)
                p.times.append(elapsed)
                p.server_ms.append(float(reply["assessments"][0]["invocationMetrics"]["guardrailProcessingLatency"]))
                p.actions.add(outcome(reply))
    foreign = watch.foreign_cores(time.perf_counter() - timed_from)
    client.close()
    return paths, foreign


def print_apply(paths: list[ApplyPath], n_types: int) -> None:
    floor = paths[0]
    f50 = median(floor.times)
    rows = []
    for p in paths:
        p50, p90, p99 = median(p.times), percentile(p.times, 90), percentile(p.times, 99)
        is_all = p.key in ("all", "all-classic") and not p.cached
        rows.append(
            [
                p.name,
                p.source,
                p.text,
                str(len(p.times)),
                f"{p50:.2f}",
                f"{p90:.2f}",
                f"{p99:.2f}",
                f"{p50 / f50:.2f}x",
                "-" if p is floor else f"{p50 - f50:+.2f}",
                f"{median(p.server_ms):.0f}",
                f"<= {TARGET_P50_MS:.0f}" if is_all else "",
                " / ".join(sorted(p.actions)),
            ]
        )
    print()
    print(
        f"ApplyGuardrail, ~{len(ANSWER.split())}-word answer (+ grounding source {len(SOURCE.split())} words "
        f"and query), one keep-alive http.client connection; ms"
    )
    print(
        table(
            ["guardrail", "source", "text", "n", "p50", "p90", "p99", "vs floor", "added p50", "server p50",
             "target p50", "guardrail answered"],
            rows,
            "<<<>>>>>>>><",
        )
    )  # fmt: skip
    print(f"(PII: all {n_types} GuardrailPiiEntityType values; server p50: assessment guardrailProcessingLatency)")
    print()
    print(f"All policies, p50 against the target (<= {TARGET_P50_MS:.0f} ms):")
    target_rows = []
    for p in paths:
        if p.key in ("all", "all-classic") and not p.cached:
            m = median(p.times)
            label = (
                ("CLASSIC " if p.key == "all-classic" else "STANDARD ")
                + f"{p.source}, {p.text}"
                + (" (+PROMPT_ATTACK)" if p.source == "INPUT" else " (+grounding)")
            )
            verdict = "met" if m <= TARGET_P50_MS else "NOT met"
            target_rows.append([label, f"{m:.2f}", f"<= {TARGET_P50_MS:.0f}", verdict])
    print(table(["", "measured ms", "target ms", ""], target_rows))


# --- 2. ConverseStream ---------------------------------------------------------------------------


@dataclass
class Run:
    ttft_s: float
    total_s: float
    tokens: int
    decode_s: float  # first delta -> last delta
    deltas: int
    stop: str
    text: str

    @property
    def decode_rate(self) -> float | None:
        return (self.tokens - 1) / self.decode_s if self.deltas > 1 and self.decode_s > 0 else None

    @property
    def e2e_rate(self) -> float:
        return self.tokens / self.total_s if self.total_s > 0 else float("nan")


class ConverseStreamHttp:
    """ConverseStream over http.client, parsed with botocore's EventStreamBuffer (as decode_throughput.py)."""

    def __init__(self, host: str, port: int, model_id: str) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=600)
        self.path = f"/model/{model_id.replace(':', '%3A')}/converse-stream"

    def run(self, body: dict[str, Any]) -> Run:
        read = converse_stream(self.conn, self.path, body)
        return Run(read.first - read.t0, read.end - read.t0, read.output_tokens, read.last - read.first,
                   read.deltas, read.stop, read.text)  # fmt: skip

    def close(self) -> None:
        self.conn.close()


def stream_body(
    system: str | None, prompt: str, max_tokens: int, guardrail: tuple[str, str] | None, ignore_eos: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.0},
    }
    if system is not None:
        body["system"] = [{"text": system}]
    if ignore_eos:
        body["additionalModelRequestFields"] = {"ignore_eos": True}
    if guardrail is not None:
        gid, mode = guardrail
        body["guardrailConfig"] = {
            "guardrailIdentifier": gid,
            "guardrailVersion": VERSION,
            "streamProcessingMode": mode,
        }
    return body


StreamPath = tuple[str, tuple[str, str] | None]  # name, (guardrail id, mode) or None


def stream_paths(ids: dict[str, str], with_info: bool) -> list[StreamPath]:
    paths: list[StreamPath] = [
        ("no guardrail (baseline)", None),
        ("all policies, sync", (ids["all"], "sync")),
        ("all policies, async", (ids["all"], "async")),
        ("all policies CLASSIC, sync", (ids["all-classic"], "sync")),
    ]
    if with_info:
        paths.append(("all but grounding, sync (info)", (ids["all-but-grounding"], "sync")))
    return paths


def run_stream(
    client: ConverseStreamHttp,
    paths: list[StreamPath],
    reps: int,
    system: Callable[[int], str | None],
    prompt: str,
    max_tokens: int,
    ignore_eos: bool,
    label: str,
    verbose: bool,
) -> dict[str, list[Run]]:
    for i, (_, guard) in enumerate(paths):  # warm-up, a few tokens; its prompts never repeat a timed one
        client.run(stream_body(system(1_000_000 + i), prompt, min(8, max_tokens), guard, ignore_eos))
    runs: dict[str, list[Run]] = {name: [] for name, _ in paths}
    for rep in range(reps):
        order = list(enumerate(paths))
        order = order if rep % 2 == 0 else order[::-1]  # ABCD DCBA ...
        for k, (name, guard) in order:
            # system(n) with its own n per run where it varies, so no run reuses a cached prompt prefix
            run = client.run(stream_body(system(rep * 10 + k), prompt, max_tokens, guard, ignore_eos))
            runs[name].append(run)
            if verbose:
                rate = run.decode_rate
                print(
                    f"  {label} run {rep + 1}/{reps} {name}: TTFT {run.ttft_s * 1000:.0f} ms, total "
                    f"{run.total_s * 1000:.0f} ms, {run.tokens} tokens in {run.deltas} deltas, "
                    f"decode {'-' if rate is None else f'{rate:.2f}'} tokens/s, stop {run.stop}",
                    flush=True,
                )
    return runs


def print_stream(title: str, runs: dict[str, list[Run]]) -> None:
    names = list(runs)
    base = runs[names[0]]
    b_ttft = median([r.ttft_s for r in base])
    b_total = median([r.total_s for r in base])
    b_rates = [r.decode_rate for r in base if r.decode_rate is not None]
    b_rate = median(b_rates) if b_rates else None
    rows = []
    for name in names:
        rs = runs[name]
        ttft = median([r.ttft_s for r in rs])
        total = median([r.total_s for r in rs])
        rates = [r.decode_rate for r in rs if r.decode_rate is not None]
        rate = median(rates) if len(rates) == len(rs) else None
        stops: dict[str, int] = {}
        for r in rs:
            stops[r.stop] = stops.get(r.stop, 0) + 1
        rows.append(
            [
                name,
                str(len(rs)),
                f"{ttft * 1000:.1f}",
                f"{(ttft - b_ttft) * 1000:+.1f}",
                f"{total * 1000:.1f}",
                f"{(total - b_total) * 1000:+.1f}",
                "-" if rate is None else f"{rate:.1f}",
                "-" if rate is None or b_rate is None else f"{rate / b_rate * 100:.0f} %",
                f"{median([r.e2e_rate for r in rs]):.1f}",
                f"{median([float(r.tokens) for r in rs]):.0f}",
                f"{median([float(r.deltas) for r in rs]):.0f}",
                ", ".join(f"{k} x{v}" for k, v in sorted(stops.items())),
            ]
        )
    print()
    print(title)
    print(
        table(
            ["path", "runs", "TTFT ms", "added", "total ms", "added", "decode tok/s", "of none", "e2e tok/s",
             "tokens", "deltas", "stop reason"],
            rows,
            "<>>>>>>>>>><",
        )
    )  # fmt: skip
    print("(medians; decode tok/s is '-' where a path's text arrived in a single delta)")
    for name in names:
        stopped = sum(r.stop == "guardrail_intervened" for r in runs[name])
        if stopped:
            print(f"WARNING: the guardrail intervened in {stopped} of {len(runs[name])} runs of {name!r}: "
                  "their figures are of a blocked or masked answer")  # fmt: skip


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "-n", "--requests", type=int, default=300, help="most timed ApplyGuardrail calls per row (default 300)"
    )
    ap.add_argument(
        "--row-seconds",
        type=float,
        default=5.0,
        help="a row stops once its timed calls add up to this (default 5 s) ...",
    )
    ap.add_argument("--min-requests", type=int, default=5, help="... and it has at least this many (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed ApplyGuardrail calls per row first (default 2)")
    ap.add_argument("--block", type=int, default=10, help="most ApplyGuardrail calls per row in a row (default 10)")
    ap.add_argument("--tiny-reps", type=int, default=15, help="streamed runs per path on the tiny model (default 15)")
    ap.add_argument("--reps", type=int, default=2, help="streamed runs per path on the 0.5B-shape model (default 2)")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per run on the 0.5B-shape model (default 128)")
    ap.add_argument("--model", type=Path, default=QWEN_MODEL, help=f"the larger GGUF (default {QWEN_MODEL})")
    ap.add_argument("--no-qwen", action="store_true", help="skip the 0.5B-shape model's streamed runs")
    ap.add_argument("--no-grounding-path", action="store_true", help="skip the informational all-but-grounding path")
    ap.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="n_threads of the 0.5B model (default: all)"
    )
    ap.add_argument("--no-pin", action="store_true", help="do not mlock the model files' pages (see _common.py)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every streamed run")
    args = ap.parse_args()
    if args.block < 1 or args.min_requests < 1 or args.requests < args.min_requests:
        ap.error("--block and --min-requests must be at least 1, and -n at least --min-requests")

    started = time.perf_counter()
    qwen = None if args.no_qwen else args.model.resolve()
    qwen_note = ""
    if qwen is not None and not qwen.is_file():
        qwen_note = f"{qwen} is missing: its streamed runs are skipped (build it with scripts/build_bench_model.py)"
        qwen = None
    types = pii_entity_types()
    models: list[dict[str, Any]] = []
    if qwen is not None:
        models.append({"id": QWEN_ID, "path": str(qwen), "n_ctx": 4096, "n_threads": args.threads, "n_batch": 512})

    print("Guardrail latency: ApplyGuardrail per policy, and the overhead of a guardrail on ConverseStream")
    print(f"machine: {machine_summary()}")
    print(
        f"ApplyGuardrail: up to {args.warmup} warm-up calls per row, then up to {args.requests} timed calls per "
        f"row (a row stops after {args.row_seconds:g}s of timed calls once it has {args.min_requests}), in "
        f"rotated blocks of up to {args.block} calls or {VISIT_S:g}s; ConverseStream: {args.tiny_reps} runs per "
        f"path on {BUILTIN_MODEL_ID}"
        + (f", {args.reps} x {args.tokens} tokens per path on {qwen.name}" if qwen else "")
        + ", alternating (ABCD DCBA ...)"
    )
    if qwen_note:
        print(qwen_note)

    with contextlib.ExitStack() as stack:
        if not args.no_pin:
            for path in (BUILTIN_GGUF, *([qwen] if qwen else [])):
                stack.enter_context(pinned_in_memory(path))
        server = stack.enter_context(outcrop_server(models, prepare=builtins_on))
        ids = create_guardrails(server.url, types)
        print(f"server up and {len(ids)} guardrails created after {time.perf_counter() - started:.1f}s", flush=True)

        # 1. ApplyGuardrail
        apply_result, apply_foreign = run_apply(server, ids, len(types), args)

        # 2. ConverseStream
        paths = stream_paths(ids, not args.no_grounding_path)
        watch, timed_from = CpuWatch(server.process.pid), time.perf_counter()
        tiny = ConverseStreamHttp(server.host, server.port, BUILTIN_MODEL_ID)
        tiny_runs = run_stream(tiny, paths, args.tiny_reps, lambda _: None, COUNT_PROMPT, 64, False, "tiny",
                               args.verbose)  # fmt: skip
        tiny.close()
        qwen_runs = None
        if qwen is not None:
            client = ConverseStreamHttp(server.host, server.port, QWEN_ID)
            qwen_runs = run_stream(
                client,
                paths,
                args.reps,
                lambda i: f"Request {i}. {QWEN_SYSTEM}",
                QWEN_PROMPT,
                args.tokens,
                True,
                "0.5B",
                args.verbose,
            )
            client.close()
        stream_foreign = watch.foreign_cores(time.perf_counter() - timed_from)
        if server.process.poll() is not None:
            print("WARNING: the server exited during the run:\n" + server_log_tail(server))

    print_apply(apply_result, len(types))
    print(foreign_cpu_note(apply_foreign))

    wrong = {name: r.text for name, rs in tiny_runs.items() for r in rs if r.text.strip() != COUNT_ANSWER}
    print_stream(
        f"ConverseStream {COUNT_PROMPT!r} on {BUILTIN_MODEL_ID} (temperature 0, "
        f"{len(COUNT_ANSWER.split())} words), guardrail input + output checks",
        tiny_runs,
    )
    for name, text in wrong.items():
        print(f"WARNING: {name} answered {text[:120]!r}, not COUNT_ANSWER")
    if qwen_runs is not None and qwen is not None:
        print_stream(
            f"ConverseStream on {qwen.name}, {args.tokens} tokens per run (ignore_eos, temperature 0; "
            f"n_threads={args.threads}; gibberish text)",
            qwen_runs,
        )
    print(foreign_cpu_note(stream_foreign))
    print(f"\ntotal time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
