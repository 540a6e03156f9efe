"""The Guardrails page's editor: a CreateGuardrail body shown as a form, and the form read back as that body.

The form has no rules of its own. `body()` only turns fields into the members botocore's model names (one row
of fields a topic, word, PII entity or regex, `<kind>-<n>-<member>`), and the page hands the result to the API's
own create / update (api/bedrock/guardrails.py), so the API's checks, and its messages, are the form's. Every
member the form cannot show (tags, KMS key) may still be sent through the page's JSON editor, which posts the
body as it is.

Each rule may be switched and act per direction, as in the API: `<row>-inputEnabled` (a checkbox: absent means
off) and `<row>-inputAction`, and the same for output. The body says only what differs from the API's defaults
(enabled, BLOCK; for PII entities and regexes, the rule's `action`), so a guardrail saved unchanged keeps its
meaning and stays close to what a boto3 caller would have sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from outcrop.api.bedrock.shapes import input_shape

BLOCKED_IN = "Sorry, the model cannot answer this question."
BLOCKED_OUT = "Sorry, the model cannot answer this question."
GROUNDING_TYPES = ("GROUNDING", "RELEVANCE")
_ROW = re.compile(r"^(topic|word|pii|regex)-(\d+)-")


def _member(*path: str) -> Any:
    shape = input_shape("bedrock", "CreateGuardrail")
    for name in path:
        shape = shape.members[name]
        while shape.type_name == "list":
            shape = shape.member
    return shape


@cache
def choices() -> dict[str, tuple[str, ...]]:
    """The values the form offers, from botocore's model (what the API accepts)."""
    return {
        "categories": tuple(_member("contentPolicyConfig", "filtersConfig", "type").enum),
        "strengths": tuple(_member("contentPolicyConfig", "filtersConfig", "inputStrength").enum),
        "pii": tuple(_member("sensitiveInformationPolicyConfig", "piiEntitiesConfig", "type").enum),
        "tiers": tuple(_member("contentPolicyConfig", "tierConfig", "tierName").enum),
    }


# --- a definition -> what the form shows -------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _direction(item: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {"enabled": item.get(f"{key}Enabled", True) is not False,
            "action": item.get(f"{key}Action") or item.get("action") or "BLOCK"}  # fmt: skip


def _ways(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"input": _direction(item, "input"), "output": _direction(item, "output")}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def view(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the form shows for a definition (CreateGuardrail's body, or GetGuardrail's config as stored);
    None: a new guardrail. Tolerant of a malformed body (a refused one is shown again as it was sent)."""
    config = _map(config)
    new = not config
    content = _map(config.get("contentPolicyConfig"))
    by_type = {f.get("type"): f for f in map(_map, _list(content.get("filtersConfig")))}
    filters = []
    for category in choices()["categories"]:
        f = by_type.get(category, {})
        ways = _ways(f)
        ways["input"]["strength"] = _text(f.get("inputStrength")) or "NONE"
        ways["output"]["strength"] = _text(f.get("outputStrength")) or "NONE"
        filters.append({"type": category, **ways,
                        "inputModalities": ",".join(map(_text, _list(f.get("inputModalities")))),
                        "outputModalities": ",".join(map(_text, _list(f.get("outputModalities"))))})  # fmt: skip
    topic_policy = _map(config.get("topicPolicyConfig"))
    topics = [{"name": _text(t.get("name")), "definition": _text(t.get("definition")),
               "examples": "\n".join(map(_text, _list(t.get("examples")))), **_ways(t)}
              for t in map(_map, _list(topic_policy.get("topicsConfig")))]  # fmt: skip
    word_policy = _map(config.get("wordPolicyConfig"))
    words = [{"text": _text(w.get("text")), **_ways(w)} for w in map(_map, _list(word_policy.get("wordsConfig")))]
    managed = next((m for m in map(_map, _list(word_policy.get("managedWordListsConfig")))
                    if m.get("type") == "PROFANITY"), None)  # fmt: skip
    sensitive = _map(config.get("sensitiveInformationPolicyConfig"))
    pii = [{"type": _text(p.get("type")), **_ways(p)} for p in map(_map, _list(sensitive.get("piiEntitiesConfig")))]
    regexes = [{"name": _text(r.get("name")), "description": _text(r.get("description")),
                "pattern": _text(r.get("pattern")), **_ways(r)}
               for r in map(_map, _list(sensitive.get("regexesConfig")))]  # fmt: skip
    grounding_policy = _map(config.get("contextualGroundingPolicyConfig"))
    grounding_by_type = {g.get("type"): g for g in map(_map, _list(grounding_policy.get("filtersConfig")))}
    grounding = []
    for kind in GROUNDING_TYPES:
        g = grounding_by_type.get(kind, {})
        grounding.append({"type": kind, "threshold": _text(g.get("threshold")), "action": g.get("action") or "BLOCK",
                          "enabled": g.get("enabled", True) is not False})  # fmt: skip
    c = _map(config.get("constitution"))
    return {
        "name": _text(config.get("name")),
        "description": _text(config.get("description")),
        "blockedInputMessaging": _text(config.get("blockedInputMessaging")) or (BLOCKED_IN if new else ""),
        "blockedOutputsMessaging": _text(config.get("blockedOutputsMessaging")) or (BLOCKED_OUT if new else ""),
        "crossRegion": _text(_map(config.get("crossRegionConfig")).get("guardrailProfileIdentifier")),
        "contentTier": _text(_map(content.get("tierConfig")).get("tierName")),
        "topicTier": _text(_map(topic_policy.get("tierConfig")).get("tierName")),
        "content": filters,
        "topics": topics,
        "words": words,
        "profanity": {"on": managed is not None, **_ways(managed or {})},
        "pii": pii,
        "regexes": regexes,
        "grounding": grounding,
        "constitution": {
            "judgeModel": _text(c.get("judgeModel")),
            "principles": "\n".join(map(_text, _list(c.get("principles")))),
            "hardConstraints": "\n".join(map(_text, _list(c.get("hardConstraints")))),
            "checkInput": c.get("checkInput", True) is not False,
            "checkOutput": c.get("checkOutput", True) is not False,
            "reviseOutput": c.get("reviseOutput", False) is True,
            "useDefault": c.get("useDefault", False) is True,
        },
    }


def blanks() -> dict[str, dict[str, Any]]:
    """An empty row of each list, as the form shows a new one."""
    ways = _ways({})
    return {"topic": {"name": "", "definition": "", "examples": "", **ways}, "word": {"text": "", **ways},
            "pii": {"type": "", **ways}, "regex": {"name": "", "pattern": "", "description": "", **ways}}  # fmt: skip


# --- the form -> a CreateGuardrail body --------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _switches(form: Mapping[str, str], row: str, base: str | None = None) -> dict[str, Any]:
    """inputEnabled / inputAction / outputEnabled / outputAction of a row, where they differ from the default:
    enabled, and `base` (the rule's own `action`) or else BLOCK."""
    out: dict[str, Any] = {}
    for key in ("input", "output"):
        if f"{row}-{key}Enabled" not in form:
            out[f"{key}Enabled"] = False
        action = form.get(f"{row}-{key}Action", "")
        if action and action != (base or "BLOCK"):
            out[f"{key}Action"] = action
    return out


def _base_action(form: Mapping[str, str], row: str) -> str:
    """A PII entity's or regex's `action` (required by the API): its input action, or its output action when it
    checks output only."""
    key = "output" if f"{row}-inputEnabled" not in form and f"{row}-outputEnabled" in form else "input"
    return form.get(f"{row}-{key}Action") or "BLOCK"


def _rows(form: Mapping[str, str], kind: str) -> list[str]:
    found = {int(m.group(2)) for k in form if (m := _ROW.match(k)) and m.group(1) == kind}
    return [f"{kind}-{n}" for n in sorted(found)]


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # the API's check says what is wrong with it


def body(form: Mapping[str, str]) -> dict[str, Any]:
    """CreateGuardrail's body from the editor's fields (empty rows left out)."""
    f = {k: v.strip() if not k.endswith(("-examples", "-principles", "-hardConstraints")) else v
         for k, v in form.items()}  # fmt: skip
    out: dict[str, Any] = {"name": f.get("name", "")}
    for key in ("description",):
        if f.get(key):
            out[key] = f[key]
    out["blockedInputMessaging"] = f.get("blockedInputMessaging", "")
    out["blockedOutputsMessaging"] = f.get("blockedOutputsMessaging", "")

    filters = []
    for category in choices()["categories"]:
        row = f"content-{category}"
        strengths = {k: f.get(f"{row}-{k}Strength") or "NONE" for k in ("input", "output")}
        if strengths["input"] == "NONE" and strengths["output"] == "NONE":
            continue
        item: dict[str, Any] = {"type": category, "inputStrength": strengths["input"],
                                "outputStrength": strengths["output"], **_switches(f, row)}  # fmt: skip
        for key in ("inputModalities", "outputModalities"):
            if f.get(f"{row}-{key}"):
                item[key] = [m.strip() for m in f[f"{row}-{key}"].split(",") if m.strip()]
        filters.append(item)
    if filters:
        out["contentPolicyConfig"] = {"filtersConfig": filters}
        if f.get("contentTier"):
            out["contentPolicyConfig"]["tierConfig"] = {"tierName": f["contentTier"]}

    topics = []
    for row in _rows(f, "topic"):
        name, definition = f.get(f"{row}-name", ""), f.get(f"{row}-definition", "")
        examples = f.get(f"{row}-examples", "")
        if not (name or definition or examples.strip()):
            continue
        topic: dict[str, Any] = {"name": name, "definition": definition, "type": "DENY"}
        if _lines(examples):
            topic["examples"] = _lines(examples)
        topics.append({**topic, **_switches(f, row)})
    if topics:
        out["topicPolicyConfig"] = {"topicsConfig": topics}
        if f.get("topicTier"):
            out["topicPolicyConfig"]["tierConfig"] = {"tierName": f["topicTier"]}

    words = [{"text": f[f"{row}-text"], **_switches(f, row)} for row in _rows(f, "word") if f.get(f"{row}-text")]
    word_policy: dict[str, Any] = {"wordsConfig": words} if words else {}
    if "profanity" in f:
        word_policy["managedWordListsConfig"] = [{"type": "PROFANITY", **_switches(f, "profanity")}]
    if word_policy:
        out["wordPolicyConfig"] = word_policy

    pii = []
    for row in _rows(f, "pii"):
        if f.get(f"{row}-type"):
            action = _base_action(f, row)
            pii.append({"type": f[f"{row}-type"], "action": action, **_switches(f, row, action)})
    regexes = []
    for row in _rows(f, "regex"):
        name, pattern = f.get(f"{row}-name", ""), f.get(f"{row}-pattern", "")
        if not (name or pattern):
            continue
        action = _base_action(f, row)
        regex: dict[str, Any] = {"name": name, "pattern": pattern, "action": action}
        if f.get(f"{row}-description"):
            regex["description"] = f[f"{row}-description"]
        regexes.append({**regex, **_switches(f, row, action)})
    sensitive: dict[str, Any] = {}
    if pii:
        sensitive["piiEntitiesConfig"] = pii
    if regexes:
        sensitive["regexesConfig"] = regexes
    if sensitive:
        out["sensitiveInformationPolicyConfig"] = sensitive

    grounding = []
    for kind in GROUNDING_TYPES:
        row = f"grounding-{kind}"
        if not f.get(f"{row}-threshold"):
            continue
        item = {"type": kind, "threshold": _number(f[f"{row}-threshold"])}
        if (f.get(f"{row}-action") or "BLOCK") != "BLOCK":
            item["action"] = f[f"{row}-action"]
        if f"{row}-enabled" not in f:
            item["enabled"] = False
        grounding.append(item)
    if grounding:
        out["contextualGroundingPolicyConfig"] = {"filtersConfig": grounding}

    if f.get("crossRegion"):
        out["crossRegionConfig"] = {"guardrailProfileIdentifier": f["crossRegion"]}

    principles, hard = _lines(f.get("constitution-principles", "")), _lines(f.get("constitution-hardConstraints", ""))
    if f.get("constitution-judgeModel") or principles or hard or "constitution-useDefault" in f:
        c: dict[str, Any] = {}
        if f.get("constitution-judgeModel"):  # else the API's check says that one is needed
            c["judgeModel"] = f["constitution-judgeModel"]
        if principles:
            c["principles"] = principles
        if hard:
            c["hardConstraints"] = hard
        for flag, default in (("checkInput", True), ("checkOutput", True), ("reviseOutput", False),
                              ("useDefault", False)):  # fmt: skip
            if (f"constitution-{flag}" in f) != default:
                c[flag] = not default
        out["constitution"] = c
    return out
