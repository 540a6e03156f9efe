"""The Guardrails page in a real Chromium: create a guardrail in the form (a word filter and a denied topic, rows
added with the page's script), see the API's validation message when the form is wrong, and type blocked text in
the test panel to see it blocked with the assessment that blocked it; and the same at phone width."""

from __future__ import annotations

import re
from typing import Any

from tests.console.browser.conftest import sign_in
from tests.console.conftest import Served

BLOCKED = "That is not something I can discuss."


def _new_guardrail(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/console/guardrails")
    page.get_by_role("link", name="New guardrail").click()
    page.wait_for_url(f"{url}/console/guardrails/new")
    page.locator("#name").fill(name)
    page.get_by_label("Message for a blocked prompt").fill(BLOCKED)


def _run_test(page: Any, text: str, source: str = "INPUT") -> Any:
    page.get_by_label("Source", exact=True).select_option(source)
    page.get_by_label("Text to check").fill(text)
    page.get_by_role("button", name="Run ApplyGuardrail").click()
    action = page.locator("#test-action")
    action.wait_for()
    return action


def test_create_a_guardrail_in_the_form_and_see_it_block_in_the_test_panel(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["root"])
    _new_guardrail(page, keyed.url, "browser-words")
    words = page.locator("#word-filters")
    words.get_by_label("Word or phrase").fill("flux capacitor")
    words.get_by_role("button", name="Add word").click()
    second = words.get_by_label("Word or phrase").nth(1)
    assert second.evaluate("e => e === document.activeElement")  # the new row's field has the focus
    second.fill("hoverboard")
    words.get_by_role("button", name="Add word").click()
    words.get_by_label("Word or phrase").nth(2).fill("discarded")
    words.get_by_role("button", name="Remove word").nth(2).click()  # the row goes, and nothing of it is sent
    assert words.get_by_label("Word or phrase").count() == 2
    assert words.get_by_role("button", name="Add word").evaluate("e => e === document.activeElement")
    topics = page.locator("#denied-topics")
    topics.get_by_label("Name").fill("Time travel")
    topics.get_by_label("Definition").fill("Travelling to the past or the future.")
    topics.get_by_label("Example phrases").fill("How do I go back to 1955?")
    page.get_by_role("button", name="Create guardrail").click()
    page.wait_for_url(re.compile(r".*/console/guardrails/[a-z0-9]+\?done=created$"))
    assert page.get_by_role("status").filter(has_text="Guardrail created.").is_visible()
    assert page.get_by_role("heading", name="browser-words").is_visible()

    action = _run_test(page, "Can you sell me a flux capacitor?")
    assert action.inner_text() == "GUARDRAIL_INTERVENED"
    result = page.locator("#test-result")
    assert result.locator("pre.output").first.inner_text() == BLOCKED
    row = result.locator("#test-findings tbody tr").filter(has_text="flux capacitor")
    assert row.locator("td .f-policy").inner_text() == "Word filters"
    assert row.locator("td .f-item").inner_text() == "custom word"
    assert row.locator("td").all_inner_texts()[1:] == ["flux capacitor", "", "BLOCKED"]

    action = _run_test(page, "How can I travel back in time to 1955?")  # the denied topic, by meaning
    assert action.inner_text() == "GUARDRAIL_INTERVENED"
    row = result.locator("#test-findings tbody tr").filter(has_text="Time travel")
    assert row.locator("td .f-policy").inner_text() == "Denied topics"
    assert row.locator("td").last.inner_text() == "BLOCKED"

    action = _run_test(page, "What a nice day.")
    assert action.inner_text() == "NONE"
    assert "No policy found anything." in result.inner_text()

    # the DRAFT as saved: both words, the topic, shown again in the form
    assert page.locator("#word-1-text").input_value() == "hoverboard"
    assert page.locator("#word-filters").get_by_label("Word or phrase").count() == 2
    assert page.locator("#topic-0-name").input_value() == "Time travel"


def test_the_apis_validation_message_shows_on_the_page(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["root"])
    _new_guardrail(page, keyed.url, "not valid!")
    page.get_by_role("button", name="Create guardrail").click()
    alert = page.get_by_role("alert")
    assert "body.name 'not valid!' must match the pattern" in alert.inner_text()
    assert page.locator("#name").input_value() == "not valid!"  # kept, to be corrected


def test_the_guardrails_page_at_phone_width(keyed: Served, browser: Any) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        sign_in(page, keyed.url, keyed.keys["alice"])
        page.goto(f"{keyed.url}/console/guardrails")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.get_by_role("link", name="console-test").click()
        page.wait_for_url(f"{keyed.url}/console/guardrails/{keyed.guardrail}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # the test panel comes first on a phone, and works
        test_box = page.locator("#test").bounding_box()
        editor_box = page.locator(".gr-edit").bounding_box()
        assert test_box["y"] < editor_box["y"] and test_box["width"] <= 390
        page.get_by_label("Version", exact=True).select_option("1")
        action = _run_test(page, "It is in Paris.", source="OUTPUT")
        assert action.inner_text() == "GUARDRAIL_INTERVENED"
        assert page.locator("#test-findings").get_by_text("Paris", exact=True).is_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert not problems, problems
    finally:
        phone.close()
