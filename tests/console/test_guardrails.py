"""The Guardrails page (views/guardrails.py, guardrail_form.py) on the whole server with keys, through the Console
client as a browser would: the list, creating a guardrail with every policy kind in the form (read back through
the API), the API's own validation messages on the page, versions, delete, the ApplyGuardrail test panel (its
answer is the API's), what a member may do (what the API lets them), and CSRF."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any

import httpx
import markupsafe
import pytest

from outcrop.console.guardrail_form import body as form_body
from outcrop.console.guardrail_form import choices
from tests.console.conftest import BLOCKED_IN, BLOCKED_OUT, ECHO, Console, Served, signed_in

# Every policy kind the form has, as a person fills it in (unchecked checkboxes are simply absent).
EVERY_POLICY = {
    "name": "every-policy", "description": "All the kinds",
    "blockedInputMessaging": "No, not that.", "blockedOutputsMessaging": "That answer is withheld.",
    "content-HATE-inputEnabled": "on", "content-HATE-inputStrength": "HIGH", "content-HATE-inputAction": "BLOCK",
    "content-HATE-outputEnabled": "on", "content-HATE-outputStrength": "MEDIUM", "content-HATE-outputAction": "BLOCK",
    "content-INSULTS-inputEnabled": "on", "content-INSULTS-inputStrength": "LOW", "content-INSULTS-inputAction": "NONE",
    "content-INSULTS-outputStrength": "LOW", "content-INSULTS-outputAction": "BLOCK",
    "content-PROMPT_ATTACK-inputEnabled": "on", "content-PROMPT_ATTACK-inputStrength": "HIGH",
    "content-PROMPT_ATTACK-inputAction": "BLOCK", "content-PROMPT_ATTACK-outputEnabled": "on",
    "content-SEXUAL-inputStrength": "NONE", "content-SEXUAL-outputStrength": "NONE",
    "contentTier": "CLASSIC",
    "topic-0-name": "Investment advice", "topic-0-definition": "Recommending stocks or other investments.",
    "topic-0-examples": "Which stock should I buy?\n\nIs gold a good investment?\n",
    "topic-0-inputEnabled": "on", "topic-0-inputAction": "BLOCK", "topic-0-outputEnabled": "on",
    "topic-0-outputAction": "NONE",
    "topic-3-name": "", "topic-3-definition": "", "topic-3-examples": "",  # an empty row: left out
    "topicTier": "",
    "word-0-text": "frobnicator", "word-0-inputEnabled": "on", "word-0-outputEnabled": "on",
    "word-0-inputAction": "BLOCK", "word-0-outputAction": "BLOCK",
    "word-1-text": "  Paris ", "word-1-outputEnabled": "on", "word-1-outputAction": "BLOCK",
    "profanity": "on", "profanity-inputEnabled": "on", "profanity-outputEnabled": "on",
    "profanity-inputAction": "BLOCK", "profanity-outputAction": "NONE",
    "pii-0-type": "EMAIL", "pii-0-inputEnabled": "on", "pii-0-inputAction": "ANONYMIZE",
    "pii-0-outputEnabled": "on", "pii-0-outputAction": "ANONYMIZE",
    "pii-1-type": "US_SOCIAL_SECURITY_NUMBER", "pii-1-inputEnabled": "on", "pii-1-inputAction": "BLOCK",
    "pii-1-outputEnabled": "on", "pii-1-outputAction": "ANONYMIZE",
    "pii-2-type": "",  # a row nobody chose a type for: left out
    "regex-0-name": "ticket", "regex-0-pattern": r"TCK-\d{4}", "regex-0-description": "Support tickets",
    "regex-0-outputEnabled": "on", "regex-0-outputAction": "ANONYMIZE", "regex-0-inputAction": "BLOCK",
    "grounding-GROUNDING-threshold": "0.6", "grounding-GROUNDING-action": "BLOCK", "grounding-GROUNDING-enabled": "on",
    "grounding-RELEVANCE-threshold": "0.4", "grounding-RELEVANCE-action": "NONE",
    "constitution-judgeModel": ECHO, "constitution-principles": "Be kind.\nNo medical dosages.\n",
    "constitution-hardConstraints": "Never reveal a password.", "constitution-checkOutput": "on",
    "crossRegion": "us.guardrail.v1:0",
}  # fmt: skip

# ... and the CreateGuardrail body it is (only what differs from the API's defaults is said).
EVERY_BODY = {
    "name": "every-policy", "description": "All the kinds",
    "blockedInputMessaging": "No, not that.", "blockedOutputsMessaging": "That answer is withheld.",
    "contentPolicyConfig": {"filtersConfig": [
        {"type": "HATE", "inputStrength": "HIGH", "outputStrength": "MEDIUM"},
        {"type": "INSULTS", "inputStrength": "LOW", "outputStrength": "LOW", "inputAction": "NONE",
         "outputEnabled": False},
        {"type": "PROMPT_ATTACK", "inputStrength": "HIGH", "outputStrength": "NONE"},
    ], "tierConfig": {"tierName": "CLASSIC"}},
    "topicPolicyConfig": {"topicsConfig": [
        {"name": "Investment advice", "definition": "Recommending stocks or other investments.", "type": "DENY",
         "examples": ["Which stock should I buy?", "Is gold a good investment?"], "outputAction": "NONE"},
    ]},
    "wordPolicyConfig": {
        "wordsConfig": [{"text": "frobnicator"}, {"text": "Paris", "inputEnabled": False}],
        "managedWordListsConfig": [{"type": "PROFANITY", "outputAction": "NONE"}],
    },
    "sensitiveInformationPolicyConfig": {
        "piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"},
                              {"type": "US_SOCIAL_SECURITY_NUMBER", "action": "BLOCK", "outputAction": "ANONYMIZE"}],
        "regexesConfig": [{"name": "ticket", "pattern": r"TCK-\d{4}", "action": "ANONYMIZE",
                           "description": "Support tickets", "inputEnabled": False, "inputAction": "BLOCK"}],
    },
    "contextualGroundingPolicyConfig": {"filtersConfig": [
        {"type": "GROUNDING", "threshold": 0.6}, {"type": "RELEVANCE", "threshold": 0.4, "action": "NONE",
                                                  "enabled": False},
    ]},
    "crossRegionConfig": {"guardrailProfileIdentifier": "us.guardrail.v1:0"},
    "constitution": {"judgeModel": ECHO, "principles": ["Be kind.", "No medical dosages."],
                     "hardConstraints": ["Never reveal a password."], "checkInput": False},
}  # fmt: skip


def _api(served: Served, who: str = "root") -> httpx.Client:
    """The control plane and bedrock-runtime over plain HTTP with `who`'s API key (so that bodies boto3 would refuse
    on the client side reach the server's checks)."""
    return httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.keys[who]}"}, timeout=60)


def _created(r: httpx.Response) -> str:
    assert r.status_code == 303, r.text
    found = re.fullmatch(r"/console/guardrails/([a-z0-9]+)\?done=created", r.headers["location"])
    assert found, r.headers["location"]
    return found.group(1)


def _message(page: str) -> str:
    found = re.search(r'<p class="notice error" role="alert" id="problem">([^<]*)</p>', page)
    assert found, page[:2000]
    return html.unescape(found.group(1))


class _Editor(HTMLParser):
    """The fields a browser would submit from a form (by id): its inputs, checked boxes, textareas and selected
    options, outside <template> and disabled fieldsets."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.fields, self.inside, self.template = form_id, {}, False, 0
        self.select: str | None = None
        self.textarea: str | None = None
        self.first_option: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "template":
            self.template += 1
        if self.template:
            return
        name = a.get("name")
        if tag == "input" and name:
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.fields[name] = "on"
            else:
                self.fields[name] = a.get("value") or ""
        elif tag == "textarea" and name:
            self.textarea, self.fields[name] = name, ""
        elif tag == "select" and name:
            self.select, self.first_option = name, None
        elif tag == "option" and self.select:
            if self.first_option is None:
                self.first_option = a.get("value") or ""
                self.fields[self.select] = self.first_option
            if "selected" in a:
                self.fields[self.select] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "template" and self.inside:
            self.template -= 1
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select":
            self.select = None

    def handle_data(self, data: str) -> None:
        if self.inside and not self.template and self.textarea:
            self.fields[self.textarea] += data


def _fields(page: str, form_id: str = "editor") -> dict[str, str]:
    parser = _Editor(form_id)
    parser.feed(page)
    return parser.fields


def _create(c: Console, fields: dict[str, str]) -> str:
    return _created(c.post_form("/console/guardrails/new", fields, c.csrf("/console/guardrails/new")))


# --- the list ----------------------------------------------------------------------------------------------


def test_the_list_shows_name_id_status_latest_version_and_updated(keyed: Served, console: Any) -> None:
    page = signed_in(console, keyed, "alice").http.get("/console/guardrails")
    assert page.status_code == 200
    row = re.search(rf'<tr data-guardrail="{keyed.guardrail}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    cells = row.group(1)
    assert f'href="/console/guardrails/{keyed.guardrail}">console-test</a>' in cells
    assert f"<code>{keyed.guardrail}</code>" in cells and "READY" in cells
    assert re.search(r'data-label="Latest version">1</td>', cells)
    assert re.search(r'data-label="Updated"><time datetime="\d{4}-\d\d-\d\dT', cells)
    assert "New guardrail" not in page.text  # members read and test; the API lets only administrators write
    assert "New guardrail" in signed_in(console, keyed, "root").http.get("/console/guardrails").text


# --- creating and editing ----------------------------------------------------------------------------------


def test_every_policy_kind_in_the_form_is_what_the_api_keeps(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    gid = _create(root, EVERY_POLICY)
    with _api(keyed) as api:
        got = api.get(f"/guardrails/{gid}").json()
    # GetGuardrail answers in its own member names; the definition as kept is the form's body exactly
    assert keyed.app.context.guardrails.get(gid).config == EVERY_BODY
    assert got["name"] == "every-policy" and got["version"] == "DRAFT" and got["status"] == "READY"
    assert got["contentPolicy"]["filters"][2] == {"type": "PROMPT_ATTACK", "inputStrength": "HIGH",
                                                  "outputStrength": "NONE"}  # fmt: skip
    assert got["constitution"]["principles"] == ["Be kind.", "No medical dosages."]
    page = root.http.get(f"/console/guardrails/{gid}?done=created")
    assert "Guardrail created." in page.text
    # The page shows the DRAFT in the form: sent back unchanged, it is the same definition.
    shown = _fields(page.text)
    assert shown["topic-0-name"] == "Investment advice" and shown["pii-1-type"] == "US_SOCIAL_SECURITY_NUMBER"
    assert form_body(shown) == EVERY_BODY
    r = root.post_form(f"/console/guardrails/{gid}", shown)
    assert r.status_code == 303 and r.headers["location"] == f"/console/guardrails/{gid}?done=saved"
    assert keyed.app.context.guardrails.get(gid).config == EVERY_BODY


def test_the_form_offers_what_the_api_accepts(keyed: Served, console: Any) -> None:
    page = signed_in(console, keyed, "root").http.get("/console/guardrails/new").text
    for category in ("SEXUAL", "VIOLENCE", "HATE", "INSULTS", "MISCONDUCT", "PROMPT_ATTACK"):
        assert f'name="content-{category}-inputStrength"' in page
    assert 'name="content-PROMPT_ATTACK-outputStrength"' not in page  # input only, as on Bedrock
    assert len(choices()["pii"]) >= 31 and all(f'<option value="{t}"' in page for t in choices()["pii"])
    assert 'name="profanity"' in page
    for field in ("topic-0-examples", "word-0-text", "regex-0-pattern", "grounding-GROUNDING-threshold",
                  "grounding-RELEVANCE-threshold", "constitution-judgeModel", "blockedInputMessaging",
                  "blockedOutputsMessaging", "definition"):  # fmt: skip
        assert f'name="{field}"' in page and f'<label for="{field}"' in page  # every field labelled


def test_editing_the_draft_and_the_json_editor(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    gid = _create(root, {"name": "edit-me", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out",
                         "word-0-text": "alpha", "word-0-inputEnabled": "on", "word-0-outputEnabled": "on"})  # fmt: skip
    assert keyed.app.context.guardrails.get(gid).config == {
        "name": "edit-me", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out",
        "wordPolicyConfig": {"wordsConfig": [{"text": "alpha"}]}}  # fmt: skip
    # the JSON editor takes CreateGuardrail's members as they are, tags and KMS key included
    body = ('{"name": "edit-me", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out", '
            '"kmsKeyId": "alias/mine", "topicPolicyConfig": {"topicsConfig": [{"name": "Cats", '
            '"definition": "Anything about cats.", "type": "DENY"}]}}')  # fmt: skip
    r = root.post_form(f"/console/guardrails/{gid}", {"definition": body})
    assert r.status_code == 303, r.text
    config = keyed.app.context.guardrails.get(gid).config
    assert config["topicPolicyConfig"]["topicsConfig"][0]["name"] == "Cats" and "wordPolicyConfig" not in config


# --- the API's validation, on the page ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": "not a name!"}, "body.name 'not a name!' must match the pattern"),
        ({"name": "bad-regex", "regex-0-name": "r", "regex-0-pattern": "(unclosed", "regex-0-inputEnabled": "on"},
         "is not a valid regular expression"),
        ({"name": "bad-threshold", "grounding-GROUNDING-threshold": "1.5", "grounding-GROUNDING-enabled": "on"},
         "contextualGroundingPolicyConfig.filtersConfig.0.threshold must be in [0, 1)"),
        ({"name": "no-judge", "constitution-principles": "Be kind."}, "constitution.judgeModel is required"),
        ({"name": "topic-no-definition", "topic-0-name": "Cats", "topic-0-inputEnabled": "on"},
         "definition must have at least 1 characters"),
    ],
)  # fmt: skip
def test_invalid_input_shows_the_apis_own_message(keyed: Served, console: Any, fields: dict[str, str],
                                                  expected: str) -> None:  # fmt: skip
    root = signed_in(console, keyed, "root")
    fields = {"blockedInputMessaging": "in", "blockedOutputsMessaging": "out", **fields}
    r = root.post_form("/console/guardrails/new", fields, root.csrf("/console/guardrails/new"))
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    shown = _message(r.text)
    assert expected in shown
    with _api(keyed) as api:  # the same body through CreateGuardrail: the same words
        answer = api.post("/guardrails", json=form_body(fields))
    assert answer.status_code == 400 and answer.json()["message"] == shown
    assert _fields(r.text)["name"] == fields["name"]  # what was typed is still there
    names = [g.name for g in keyed.app.context.guardrails.list()]
    assert fields["name"] not in names


def test_json_that_the_api_refuses_is_shown_again_with_its_message(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    text = '{"name": "json-bad", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out", "bogus": 1}'
    r = root.post_form("/console/guardrails/new", {"definition": text}, root.csrf("/console/guardrails/new"))
    assert r.status_code == 400
    assert _message(r.text) == "1 validation error(s) detected: body.bogus is not a known member"
    assert 'id="json-editor" open' in r.text and str(markupsafe.escape(text)) in r.text
    r = root.post_form("/console/guardrails/new", {"definition": "{not json"}, root.csrf("/console/guardrails/new"))
    assert r.status_code == 400 and _message(r.text).startswith("The definition is not valid JSON")


# --- versions and delete -----------------------------------------------------------------------------------


def test_a_version_is_made_from_the_draft_listed_and_deleted(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    gid = _create(root, {"name": "versioned", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out",
                         "word-0-text": "alpha", "word-0-inputEnabled": "on"})  # fmt: skip
    token = root.csrf(f"/console/guardrails/{gid}")
    r = root.post_form(f"/console/guardrails/{gid}/versions", {"description": "first cut"}, token)
    assert r.status_code == 303 and r.headers["location"] == f"/console/guardrails/{gid}?done=version-1"
    r = root.post_form(f"/console/guardrails/{gid}/versions", {}, token)
    assert r.headers["location"].endswith("done=version-2")
    with _api(keyed) as api:
        listed = api.get("/guardrails", params={"guardrailIdentifier": gid}).json()["guardrails"]
    assert [g["version"] for g in listed] == ["DRAFT", "1", "2"] and listed[1]["description"] == "first cut"
    page = root.http.get(f"/console/guardrails/{gid}?done=version-2").text
    assert "Version 2 created." in page
    table = re.search(r'<table id="versions">(.*?)</table>', page, re.S)
    assert table and re.findall(rf'href="/console/guardrails/{gid}\?version=(\d+)"', table.group(1)) == ["2", "1"]
    assert "first cut" in table.group(1)
    assert '<option value="2">2</option>' in page and '<option value="1">1</option>' in page  # the test panel's
    assert re.search(r"Latest version</dt><dd>2</dd>", page)
    r = root.post_form(f"/console/guardrails/{gid}/delete", {"version": "1"}, token)
    assert r.status_code == 303 and r.headers["location"].endswith("done=deleted-version")
    assert [v.version for v in keyed.app.context.guardrails.list(gid)] == ["DRAFT", "2"]


def test_a_numbered_version_is_shown_read_only(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    gid = _create(root, {"name": "kept", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out",
                         "word-0-text": "alpha", "word-0-inputEnabled": "on", "word-0-outputEnabled": "on"})  # fmt: skip
    token = root.csrf(f"/console/guardrails/{gid}")
    root.post_form(f"/console/guardrails/{gid}/versions", {}, token)
    changed = {**_fields(root.http.get(f"/console/guardrails/{gid}").text), "word-0-text": "beta"}
    assert root.post_form(f"/console/guardrails/{gid}", changed, token).status_code == 303
    draft = root.http.get(f"/console/guardrails/{gid}").text
    assert _fields(draft)["word-0-text"] == "beta" and '<fieldset class="bare">' in draft
    one = root.http.get(f"/console/guardrails/{gid}?version=1").text
    assert _fields(one)["word-0-text"] == "alpha" and '<fieldset class="bare" disabled>' in one
    assert '<h2 id="edit-title">Version 1</h2>' in one and 'id="save"' not in one
    assert '<option value="1" selected>1</option>' in one  # the test panel runs the version shown
    r = root.http.get(f"/console/guardrails/{gid}?version=latest")
    assert r.status_code == 400 and "guardrailVersion must be DRAFT or a number, not 'latest'." in html.unescape(r.text)
    assert root.http.get(f"/console/guardrails/{gid}?version=7").status_code == 404


def test_deleting_a_guardrail(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    gid = _create(root, {"name": "short-lived", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out"})
    r = root.post_form(f"/console/guardrails/{gid}/delete", {"confirm": "on"}, root.csrf(f"/console/guardrails/{gid}"))
    assert r.status_code == 303 and r.headers["location"] == "/console/guardrails?deleted=short-lived"
    assert "Guardrail short-lived deleted." in root.http.get(r.headers["location"]).text
    with _api(keyed) as api:
        assert api.get(f"/guardrails/{gid}").status_code == 404
    assert root.http.get(f"/console/guardrails/{gid}").status_code == 404


# --- the test panel ----------------------------------------------------------------------------------------


def _apply(c: Console, gid: str, body: dict[str, Any]) -> httpx.Response:
    return c.post_json(f"/console/guardrails/{gid}/apply", body, c.csrf(f"/console/guardrails/{gid}"))


def test_the_test_panel_answers_as_apply_guardrail_does(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")  # a member may test any guardrail, as the API lets them apply it
    r = _apply(alice, keyed.guardrail, {"text": "Tell me about the frobnicator.", "source": "INPUT", "version": "1"})
    assert r.status_code == 200, r.text
    answer, findings = r.json()["answer"], r.json()["findings"]
    assert answer["action"] == "GUARDRAIL_INTERVENED" and answer["outputs"] == [{"text": BLOCKED_IN}]
    assert findings == [{"policy": "wordPolicy", "label": "Word filters", "kind": "customWords",
                         "item": "custom word", "match": "frobnicator", "detail": "", "action": "BLOCKED",
                         "detected": True}]  # fmt: skip
    with _api(keyed, "alice") as api:
        direct = api.post(
            f"/guardrail/{keyed.guardrail}/version/1/apply",
            json={"source": "INPUT", "content": [{"text": {"text": "Tell me about the frobnicator."}}]},
        )
    expected = direct.json()
    for a in (answer, expected):
        a["assessments"][0]["invocationMetrics"].pop("guardrailProcessingLatency")
    assert answer == expected
    # 'Paris' is checked on output only (inputEnabled false)
    r = _apply(alice, keyed.guardrail, {"text": "Paris.", "source": "INPUT", "version": "DRAFT"})
    assert r.json()["answer"]["action"] == "NONE" and r.json()["findings"] == []
    r = _apply(alice, keyed.guardrail, {"text": "It is Paris.", "source": "OUTPUT", "version": "DRAFT"})
    assert r.json()["answer"]["outputs"] == [{"text": BLOCKED_OUT}]
    assert [(f["item"], f["match"], f["action"]) for f in r.json()["findings"]] == [("custom word", "Paris", "BLOCKED")]


def test_the_test_panel_shows_masked_text_and_detected_entries(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    gid = _create(root, {"name": "masking", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out",
                         "pii-0-type": "EMAIL", "pii-0-inputEnabled": "on", "pii-0-inputAction": "ANONYMIZE",
                         "regex-0-name": "ticket", "regex-0-pattern": r"TCK-\d{4}", "regex-0-inputEnabled": "on",
                         "regex-0-inputAction": "NONE", "word-0-text": "zebra", "word-0-inputEnabled": "on",
                         "word-0-inputAction": "NONE"})  # fmt: skip
    text = "Mail jane.doe@example.com about TCK-1234 and the zebra."
    r = _apply(root, gid, {"text": text, "source": "INPUT"})
    assert r.status_code == 200, r.text
    answer = r.json()["answer"]
    assert answer["action"] == "GUARDRAIL_INTERVENED"
    assert answer["outputs"] == [{"text": "Mail {EMAIL} about TCK-1234 and the zebra."}]
    rows = {(f["label"], f["item"], f["match"], f["action"]) for f in r.json()["findings"]}
    assert rows == {("Sensitive information", "EMAIL", "jane.doe@example.com", "ANONYMIZED"),
                    ("Sensitive information", "ticket", "TCK-1234", "NONE"),
                    ("Word filters", "custom word", "zebra", "NONE")}  # fmt: skip
    # FULL: every configured policy reports, even with nothing found
    r = _apply(root, gid, {"text": "Nothing here.", "source": "INPUT", "full": True})
    assert r.json()["answer"]["action"] == "NONE" and r.json()["answer"]["outputs"] == [{"text": "Nothing here."}]


def test_the_test_panel_sends_a_grounding_source_and_query(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    gid = _create(root, {"name": "grounded", "blockedInputMessaging": "in", "blockedOutputsMessaging": "out",
                         "grounding-GROUNDING-threshold": "0.99", "grounding-GROUNDING-enabled": "on"})  # fmt: skip
    r = _apply(root, gid, {"text": "The capital of France is Berlin.", "source": "OUTPUT",
                           "groundingSource": "Paris is the capital of France.",
                           "query": "What is the capital of France?"})  # fmt: skip
    assert r.status_code == 200, r.text
    answer = r.json()["answer"]
    assert answer["action"] == "GUARDRAIL_INTERVENED" and answer["outputs"] == [{"text": "out"}]
    assert answer["guardrailCoverage"]["textCharacters"] == {"guarded": 32, "total": 93}  # only the answer is guarded
    [row] = r.json()["findings"]
    assert (row["label"], row["item"], row["action"]) == ("Contextual grounding", "GROUNDING", "BLOCKED")
    assert re.fullmatch(r"score 0\.\d+ · threshold 0\.99", row["detail"])


def test_the_test_panel_refuses_what_the_api_refuses(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    r = _apply(alice, keyed.guardrail, {"text": "hi", "source": "SIDEWAYS"})
    assert r.status_code == 400 and "body.source must be one of INPUT, OUTPUT, not 'SIDEWAYS'" in r.json()["message"]
    r = _apply(alice, keyed.guardrail, {"text": "hi", "version": "latest"})
    assert r.status_code == 400 and "guardrailVersion (in the path)" in r.json()["message"]
    r = _apply(alice, keyed.guardrail, {"text": "hi", "version": "99"})
    assert (
        r.status_code == 404
        and r.json()["message"] == f"Version 99 of the guardrail '{keyed.guardrail}' was not found."
    )


# --- who may do what ---------------------------------------------------------------------------------------


def test_a_member_reads_and_tests_but_changes_nothing(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    gid = keyed.guardrail
    page = alice.http.get(f"/console/guardrails/{gid}")
    assert page.status_code == 200 and 'id="test-form"' in page.text
    assert '<fieldset class="bare" disabled>' in page.text and 'id="save"' not in page.text
    assert f'action="/console/guardrails/{gid}/versions"' not in page.text and "Delete guardrail" not in page.text
    token = alice.csrf(f"/console/guardrails/{gid}")
    denied = "Only an administrator may create, change, delete or enforce guardrails."
    before = keyed.app.context.guardrails.get(gid).config
    for path, data in (("/console/guardrails/new", {"name": "mine", "blockedInputMessaging": "a",
                                                    "blockedOutputsMessaging": "b"}),
                       (f"/console/guardrails/{gid}", {"name": "taken-over", "blockedInputMessaging": "a",
                                                        "blockedOutputsMessaging": "b"}),
                       (f"/console/guardrails/{gid}/versions", {}),
                       (f"/console/guardrails/{gid}/delete", {"confirm": "on"})):  # fmt: skip
        r = alice.post_form(path, data, token)
        assert r.status_code == 403 and denied in html.unescape(r.text), path
    r = alice.http.get("/console/guardrails/new")
    assert r.status_code == 403 and denied in html.unescape(r.text)
    assert keyed.app.context.guardrails.get(gid).config == before
    assert [v.version for v in keyed.app.context.guardrails.list(gid)][:2] == ["DRAFT", "1"]
    with _api(keyed, "alice") as api:  # the API draws the same line
        r = api.post("/guardrails", json={"name": "mine", "blockedInputMessaging": "a", "blockedOutputsMessaging": "b"})
        assert r.status_code == 403 and r.json()["message"] == denied
        assert api.get(f"/guardrails/{gid}").status_code == 200


def test_changes_without_the_csrf_token_are_refused(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    fields = {"name": "forged", "blockedInputMessaging": "a", "blockedOutputsMessaging": "b"}
    for token in ("", "not-the-token"):
        r = root.post_form("/console/guardrails/new", fields, token)
        assert r.status_code == 403 and "CSRF token" in html.unescape(r.text)
    r = root.http.post("/console/guardrails/new", data=fields, headers={"Origin": root.url})  # no token at all
    assert r.status_code == 403
    r = root.http.post(f"/console/guardrails/{keyed.guardrail}/apply", json={"text": "frobnicator"},
                       headers={"Origin": root.url})  # fmt: skip
    assert r.status_code == 403 and "CSRF token" in r.json()["message"]
    r = root.http.post(f"/console/guardrails/{keyed.guardrail}/delete", data={"csrf_token": root.csrf()},
                       headers={"Origin": "https://evil.example"})  # fmt: skip
    assert r.status_code == 403
    assert "forged" not in [g.name for g in keyed.app.context.guardrails.list()]
    assert keyed.app.context.guardrails.get(keyed.guardrail).name == "console-test"


def test_a_server_without_a_store_says_so(base_url: str) -> None:
    """The session's local-mode server keeps no guardrails (no store): the page says so, as the API does."""
    page = httpx.get(f"{base_url}/console/guardrails", timeout=60)
    assert page.status_code == 200 and "This server has no store to keep guardrails in." in page.text
    assert "New guardrail" not in page.text
    page = httpx.get(f"{base_url}/console/guardrails/new", timeout=60)
    assert page.status_code == 400 and "This server has no store to keep guardrails in." in page.text
