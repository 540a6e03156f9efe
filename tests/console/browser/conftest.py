"""A real Chromium driven by Playwright (Python): Debian's chromium (`apt-get install chromium`, which .ci/run does),
never Playwright's own browser download. OUTCROP_CHROMIUM names another Chromium binary.

Fixtures: `browser` (one headless Chromium a module), `context` (a fresh profile a test: its own cookies),
`page` (a tab in it that fails the test on any script error), and `sign_in(page, url, key, secret="")`, which signs
in through the form as a person would. The servers are tests/console/conftest.py's `keyed` and tests/conftest.py's
`base_url` (local mode)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def chromium() -> str:
    for candidate in (os.environ.get("OUTCROP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):  # fmt: skip
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("No Chromium for the browser tests: `apt-get install chromium` (as .ci/run does), or set "
                "OUTCROP_CHROMIUM to a Chromium binary.")  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API runs an event loop on the main thread while it is open, which would
    make asyncio.run() fail in the tests that come after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    ctx.set_default_timeout(60_000)  # generous: the machine may be busy; nothing here is timed
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(str(error)))
    yield tab
    assert not problems, problems


def sign_in(page: Any, url: str, key: str, secret: str = "") -> None:
    page.goto(f"{url}/console/models")
    assert "/console/signin" in page.url
    page.get_by_label("API key or access key ID").fill(key)
    if secret:
        page.get_by_label("Secret access key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/console/models")
