"""Every console page, in a real Chromium, for what the issue asks of all of them: every form control has an
accessible name (a label, aria-label or aria-labelledby), images have alt text, there is one h1, the page fits a
390 px wide phone without sideways scrolling, and no script error happens. The colour pairs of console.css meet
WCAG AA contrast (4.5:1 for text) in the light and the dark scheme."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from outcrop.console.nav import NAV
from tests.console.browser.conftest import sign_in
from tests.console.conftest import Served

CSS = Path(__file__).resolve().parents[3] / "outcrop" / "console" / "static" / "console.css"

# The controls that have no accessible name, described (a page's own script has run by then).
UNNAMED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter((el) => !el.closest('[hidden]'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !el.getAttribute('title')
                  && !(el.tagName === 'BUTTON' && el.textContent.trim())
                  && !(el.type === 'submit' && el.value))
  .map((el) => el.outerHTML.slice(0, 120))"""


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_names_its_controls_and_fits_the_screen(keyed: Served, page: Any, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, keyed.url, keyed.keys["root"])
    for item in NAV:
        page.goto(f"{keyed.url}{item.path}")
        page.wait_for_load_state("networkidle")
        assert page.evaluate(UNNAMED) == [], item.path
        assert page.locator("img:not([alt])").count() == 0, item.path
        assert page.locator("h1").count() == 1, item.path
        if width < 500:
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{item.path} is {overflow} px wider than a {width} px screen"


def _colours(block: str) -> dict[str, tuple[float, float, float]]:
    return {name: tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[misc]
            for name, h in re.findall(r"--([a-z-]+):\s*#([0-9a-fA-F]{6})", block)}  # fmt: skip


def _luminance(rgb: tuple[float, float, float]) -> float:
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_colours_meet_wcag_aa_contrast_in_both_schemes() -> None:
    css = CSS.read_text()
    light = _colours(css[: css.index("@media (prefers-color-scheme: dark)")])
    dark = light | _colours(css[css.index("@media (prefers-color-scheme: dark)"):])  # fmt: skip
    pairs = [("fg", "bg"), ("fg", "panel"), ("muted", "bg"), ("muted", "panel"), ("accent", "bg"),
             ("accent-fg", "accent"), ("ok", "ok-bg"), ("warn", "warn-bg"), ("bad", "bad-bg")]  # fmt: skip
    for scheme, colours in (("light", light), ("dark", dark)):
        for fg, bg in pairs:
            ratio = _contrast(colours[fg], colours[bg])
            assert ratio >= 4.5, f"{scheme}: --{fg} on --{bg} is {ratio:.2f}:1"
