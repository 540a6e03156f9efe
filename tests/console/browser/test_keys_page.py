"""The Keys and Usage pages in a real Chromium: an administrator creates a key (its secret on the page once) and
revokes another, whose next real API call (the official openai client against the served server) is refused; real
calls show up in the usage charts; both pages fit a 390 px wide phone."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.console.browser.conftest import sign_in
from tests.console.conftest import ECHO, Served


def _client(served: Served, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0, timeout=60)


def _ask(client: openai.OpenAI, text: str = "hello there") -> str:
    answer = client.chat.completions.create(model=ECHO, messages=[{"role": "user", "content": text}])
    return answer.choices[0].message.content or ""


def test_an_administrator_creates_a_key_and_revokes_another(keyed: Served, page: Any) -> None:
    victim_id, victim = keyed.keyring.create_api_key("victor", "to be revoked")
    assert _ask(_client(keyed, victim)) == "hello there"  # works until revoked
    sign_in(page, keyed.url, keyed.keys["root"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys").click()
    page.get_by_role("heading", name="Keys and access").wait_for()
    # create: the secret is on the answer's page, once
    page.locator("#create-key").get_by_label("Principal").fill("grace")
    page.get_by_label("Label (optional)").fill("laptop")
    page.get_by_label("Groups (optional, comma-separated)").fill("beta")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("heading", name="Key created for grace").wait_for()
    secret = page.get_by_label("API key (shown once)").input_value()
    assert secret.startswith("ocp_") and _ask(_client(keyed, secret), "from grace") == "from grace"
    page.get_by_role("link", name="Back to keys").click()
    page.get_by_role("heading", name="Keys and access").wait_for()
    assert secret not in page.content()
    grace = page.locator("#keys tr", has_text="grace")
    assert "beta" in grace.inner_text() and "laptop" in grace.inner_text()
    # revoke victor's key (the page asks first)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Revoke {victim_id}").click()
    page.get_by_text(f"Key {victim_id} revoked").wait_for()
    assert page.locator(f'#keys tr[data-key="{victim_id}"]').get_attribute("data-state") == "revoked"
    with pytest.raises((openai.AuthenticationError, openai.PermissionDeniedError)):
        _ask(_client(keyed, victim))
    assert _ask(_client(keyed, secret), "still fine") == "still fine"  # only that key


def test_dismissing_the_question_revokes_nothing(keyed: Served, page: Any) -> None:
    kept_id, kept = keyed.keyring.create_api_key("walter")
    sign_in(page, keyed.url, keyed.keys["root"])
    page.goto(f"{keyed.url}/console/keys")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name=f"Revoke {kept_id}").click()
    assert page.locator(f'#keys tr[data-key="{kept_id}"]').get_attribute("data-state") == "active"
    assert _ask(_client(keyed, kept)) == "hello there"


def test_real_calls_show_in_the_usage_charts(keyed: Served, page: Any) -> None:
    key_id, key = keyed.keyring.create_api_key("heidi")
    client = _client(keyed, key)
    for i in range(3):
        assert _ask(client, f"call {i}") == f"call {i}"
    sign_in(page, keyed.url, key)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    chart = page.locator("#requests-by-model")
    assert chart.locator("figcaption").inner_text() == "Requests a day, by model"
    bars = chart.locator("svg rect")
    assert bars.count() == 1 and bars.first.get_attribute("data-series") == ECHO
    assert float(bars.first.get_attribute("data-value")) == 3
    box = bars.first.bounding_box()
    assert box is not None and box["height"] > 10 and box["width"] > 0  # drawn, not just present
    by_key = page.locator("#requests-by-key svg rect")
    assert by_key.count() == 1 and by_key.first.get_attribute("data-series") == f"{key_id} (heidi)"
    assert page.locator("#latency svg rect").count() == 3  # p50, p90, p99 of the one model
    assert "3 requests in all" in chart.locator("desc").text_content()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    assert download.value.suggested_filename.startswith("outcrop-usage-heidi-")


def _fits(page: Any) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the screen"


def test_keys_and_usage_fit_a_phone(keyed: Served, page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, keyed.url, keyed.keys["root"])
    page.goto(f"{keyed.url}/console/keys")
    _fits(page)
    create = page.get_by_role("button", name="Create key")
    create.scroll_into_view_if_needed()
    box = create.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.goto(f"{keyed.url}/console/usage")
    _fits(page)
    svg = page.locator("#requests-by-model svg").bounding_box()
    assert svg is not None and svg["width"] <= 390 and svg["height"] > 100
