"""The console in a real Chromium: signing in, the playground streaming on the tiny model, two models side by side,
a guardrail's intervention, "Show code", keyboard use and phone width."""

from __future__ import annotations

from typing import Any

from outcrop.models import BUILTIN_MODEL_ID
from tests.console.browser.conftest import sign_in
from tests.console.conftest import ECHO, Served

# Records every text the first pane's last answer shows, as it changes (set up before sending).
WATCH = """() => {
  window.seen = [];
  new MutationObserver(() => {
    const answers = document.querySelectorAll("#pane-a .turn.assistant .text");
    if (answers.length) window.seen.push(answers[answers.length - 1].textContent);
  }).observe(document.getElementById("pane-a"), {childList: true, subtree: true, characterData: true});
}"""


def _send(page: Any, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def _answer(page: Any, pane: str = "a") -> Any:
    answer = page.locator(f"#pane-{pane} .turn.assistant").last
    answer.and_(page.locator("[data-state=done]")).wait_for()
    return answer


def test_sign_in_with_a_key_and_chat_on_the_tiny_model(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["alice"])
    assert page.get_by_role("heading", name="Models").is_visible()
    assert page.locator(".who .name").inner_text() == "alice"
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Playground").click()
    page.get_by_label("Model", exact=True).select_option(BUILTIN_MODEL_ID)
    page.get_by_label("Temperature").fill("0")
    _send(page, "What is the capital of France?")
    answer = _answer(page)
    assert answer.locator(".text").inner_text() == "The capital of France is Paris."
    stats = answer.locator(".stats")
    assert int(stats.get_attribute("data-input-tokens")) > 0 and int(stats.get_attribute("data-output-tokens")) > 0
    assert stats.get_attribute("data-ttft-ms") != "" and "TTFT" in stats.inner_text()
    # the conversation goes on: the next turn carries the first
    _send(page, "What is the capital of France?")
    assert page.locator("#pane-a .turn.user").count() == 2
    _answer(page)
    assert page.locator("#pane-a .turn.assistant[data-state=done]").count() == 2


def test_the_answer_appears_as_it_is_written(keyed: Served, page: Any) -> None:
    """The echo model writes a word every 50 ms: the page shows the answer growing, not all at once."""
    sign_in(page, keyed.url, keyed.keys["alice"])
    page.goto(f"{keyed.url}/console/playground?model={ECHO}")
    page.evaluate(WATCH)
    words = " ".join(f"word{i}" for i in range(12))
    _send(page, words)
    assert _answer(page).locator(".text").inner_text() == words
    seen = page.evaluate("window.seen")
    partial = [s for s in seen if s and s != words and words.startswith(s)]
    assert len(set(partial)) >= 2, seen


def test_two_models_side_by_side_and_the_code_for_the_request(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["alice"])
    page.goto(f"{keyed.url}/console/playground?model={BUILTIN_MODEL_ID}")
    page.get_by_label("Compare with a second model").check()
    page.get_by_label("Second model", exact=True).select_option(ECHO)
    assert page.locator("#pane-b-title").inner_text() == ECHO
    page.get_by_label("Temperature").fill("0")
    _send(page, "What is the capital of France?")
    assert _answer(page, "a").locator(".text").inner_text() == "The capital of France is Paris."
    assert _answer(page, "b").locator(".text").inner_text() == "What is the capital of France?"  # the echo
    page.get_by_role("button", name="Show code").click()
    dialog = page.get_by_role("dialog", name="Code for this request")
    code = dialog.locator("#code-text")
    assert f'modelId="{BUILTIN_MODEL_ID}"' in code.inner_text() and '"temperature": 0' in code.inner_text()
    page.get_by_role("tab", name="boto3").press("ArrowRight")  # tabs move with the arrow keys
    assert "client.chat.completions.create(" in code.inner_text()
    page.get_by_role("tab", name="curl").click()
    assert code.inner_text().startswith(f"curl -sS {keyed.url}/model/outcrop.tiny-chat-v1%3A0/converse")
    assert keyed.keys["alice"] not in code.inner_text()
    page.keyboard.press("Escape")
    assert not dialog.is_visible()


def test_a_guardrail_intervening_says_which_policy_and_why(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["alice"])
    page.goto(f"{keyed.url}/console/playground?model={BUILTIN_MODEL_ID}")
    page.get_by_label("Guardrail", exact=True).select_option(keyed.guardrail)
    page.get_by_label("Version").select_option("1")
    page.get_by_label("Temperature").fill("0")
    _send(page, "What is the capital of France?")
    guard = _answer(page).locator(".guard")
    assert guard.get_attribute("data-action") == "INTERVENED"
    assert "output: wordPolicy \u203a customWords \u203a Paris (BLOCKED)" in guard.inner_text()


def test_keyboard_first_stop_is_the_skip_link(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["alice"])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_usable_at_phone_width(keyed: Served, browser: Any) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        sign_in(page, keyed.url, keyed.keys["root"])
        for path in ("/console/models", "/console/playground", "/console/usage"):
            page.goto(keyed.url + path)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
            assert page.get_by_role("navigation", name="Main").is_visible()
        page.goto(f"{keyed.url}/console/playground?model={ECHO}")
        _send(page, "hello phone")
        assert _answer(page).locator(".text").inner_text() == "hello phone"
    finally:
        phone.close()


def test_local_mode_opens_straight_in(base_url: str, page: Any) -> None:
    page.goto(base_url + "/")
    assert page.url == f"{base_url}/console/models"
    assert page.locator(".who").inner_text().startswith("local")
    assert page.get_by_role("button", name="Sign out").count() == 0
