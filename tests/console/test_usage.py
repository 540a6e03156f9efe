"""The Usage page (views/usage.py): each member their own usage, administrators everyone's (readable_owner)."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from outcrop.console import charts
from tests.console.conftest import ECHO, Served, signed_in


def test_a_member_sees_only_their_own_usage(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    bob = signed_in(console, keyed, "bob")
    r = bob.post_json("/console/playground/chat", {"model": ECHO, "messages": [{"role": "user", "text": "hi bob"}]})
    assert r.status_code == 200
    page = alice.http.get("/console/usage").text
    assert "Your calls" in page and '<th scope="col">Principal</th>' not in page
    assert 'id="principal"' not in page  # no way to ask for another's
    assert signed_in(console, keyed, "bob").http.get("/console/usage").text.count(f"<code>{ECHO}</code>") >= 1


def test_a_members_cookie_cannot_read_another_keys_usage(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    for who in ("bob", "root"):
        r = alice.http.get("/console/usage", params={"principal": who})
        assert r.status_code == 403 and "another principal" in r.text
    assert alice.http.get("/console/usage", params={"principal": "alice"}).status_code == 200


def test_an_administrator_sees_everyone_or_one_principal(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    bob = signed_in(console, keyed, "bob")
    bob.post_json("/console/playground/chat", {"model": ECHO, "messages": [{"role": "user", "text": "again"}]})
    everyone = root.http.get("/console/usage").text
    assert "Everyone's calls" in everyone and "<td>bob</td>" in everyone
    one = root.http.get("/console/usage", params={"principal": "bob"}).text
    assert "bob's calls" in one and '<th scope="col">Principal</th>' not in one
    assert root.http.get("/console/usage", params={"since": "yesterday"}).status_code == 400


def test_local_mode_is_the_administrator(base_url: str) -> None:
    page = httpx.get(f"{base_url}/console/usage")
    assert page.status_code == 200 and 'id="principal"' in page.text


def _call(served: Served, who: str, text: str = "counted") -> httpx.Response:
    return httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {served.keys[who]}"},
                      json={"model": ECHO, "messages": [{"role": "user", "content": text}]}, timeout=60)  # fmt: skip


def _key_id(served: Served, who: str) -> str:
    return next(k.id for k in served.keyring.list() if k.principal == who and k.kind == "api_key")


def _bars(page: str, chart: str) -> list[tuple[str, str, float]]:
    """(label, series, value) of every bar of one chart of the page."""
    figure = re.search(rf'<figure class="chart" id="{chart}".*?</figure>', page, re.S)
    assert figure, chart
    return [(m[0], html.unescape(m[1]), float(m[2])) for m in re.findall(
        r'<rect class="s\d" [^>]*data-label="([^"]*)" data-series="([^"]*)" data-value="([^"]*)"', figure.group(0))]  # fmt: skip


def test_the_charts_draw_a_members_own_calls_by_model_key_latency_and_error(keyed: Served, console: Any) -> None:
    carol_key = keyed.keyring.create_api_key("carol")[1]
    keyed.keys["carol"] = carol_key
    for _ in range(3):
        assert _call(keyed, "carol").status_code == 200
    too_long = _call(keyed, "carol", "word " * 5000)  # past the model's context: a failed call, recorded as such
    assert too_long.status_code == 400
    assert _call(keyed, "bob").status_code == 200  # someone else's, never on carol's page
    c = console(keyed.url)
    assert c.sign_in(carol_key).status_code == 303
    page = c.http.get("/console/usage").text
    today = datetime.now(UTC).date().isoformat()
    assert "<svg viewBox" in page and 'role="img"' in page
    assert _bars(page, "requests-by-model") == [(today, ECHO, 4.0)]
    assert _bars(page, "requests-by-key") == [(today, f"{_key_id(keyed, 'carol')} (carol)", 4.0)]
    tokens = _bars(page, "tokens-by-model")
    assert len(tokens) == 1 and tokens[0][2] > 0
    latency = {series: value for label, series, value in _bars(page, "latency") if label == ECHO}
    assert set(latency) == {"p50", "p90", "p99"} and latency["p50"] <= latency["p90"] <= latency["p99"]
    assert _bars(page, "errors-by-type") == [(today, "ContextWindowExceeded", 1.0)]
    assert re.search(r'<tr data-status="ContextWindowExceeded">.*?<td class="num">1</td><td class="num">25.0%</td>',
                     page)  # fmt: skip
    row = re.search(rf'<tr data-model="{re.escape(ECHO)}">(.*?)</tr>', page, re.S).group(1)  # type: ignore[union-attr]
    assert 'data-label="Error rate" class="num">25.0%' in row and re.search(r'data-field="p99">\d', row)
    assert "bob" not in page and _key_id(keyed, "bob") not in page


def test_an_administrator_sees_every_key_and_a_date_range(keyed: Served, console: Any) -> None:
    assert _call(keyed, "alice").status_code == 200 and _call(keyed, "bob").status_code == 200
    root = signed_in(console, keyed, "root")
    series = {s for _, s, _ in _bars(root.http.get("/console/usage").text, "requests-by-key")}
    assert {f"{_key_id(keyed, w)} ({w})" for w in ("alice", "bob")} <= series
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    later = root.http.get("/console/usage", params={"since": tomorrow.isoformat(), "until": tomorrow.isoformat()})
    assert later.status_code == 200 and "Nothing in this period" in later.text and "<rect" not in later.text
    backwards = root.http.get("/console/usage", params={"since": "2026-03-02", "until": "2026-03-01"})
    assert backwards.status_code == 400 and "on or before" in backwards.text
    assert root.http.get("/console/usage", params={"since": "2020-01-01", "until": "2026-01-01"}).status_code == 400


def test_csv_export_is_a_download_of_ones_own_rows(keyed: Served, console: Any) -> None:
    assert _call(keyed, "alice").status_code == 200 and _call(keyed, "bob").status_code == 200
    formula = "=HYPERLINK(1)"  # a principal named like a spreadsheet formula is written as text
    keyed.keys[formula] = keyed.keyring.create_api_key(formula)[1]
    assert _call(keyed, formula).status_code == 200
    alice = signed_in(console, keyed, "alice")
    r = alice.http.get("/console/usage/export.csv")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=29)).isoformat()
    assert r.headers["content-disposition"] == f'attachment; filename="outcrop-usage-alice-{start}-{today}.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and {row["principal"] for row in rows} == {"alice"}
    assert list(rows[0]) == ["day", "principal", "key", "model", "requests", "input_tokens", "output_tokens",
                             "cache_read_tokens", "cache_write_tokens", "errors", "avg_latency_ms"]  # fmt: skip
    mine = [row for row in rows if row["key"] == _key_id(keyed, "alice") and row["model"] == ECHO]
    assert mine and mine[0]["day"] == today.isoformat() and int(mine[0]["requests"]) >= 1
    assert alice.http.get("/console/usage/export.csv", params={"principal": "bob"}).status_code == 403
    everyone = signed_in(console, keyed, "root").http.get("/console/usage/export.csv").text
    principals = {row["principal"] for row in csv.DictReader(io.StringIO(everyone))}
    assert {"alice", "bob", "'" + formula} <= principals and formula not in principals
    assert httpx.get(f"{keyed.url}/console/usage/export.csv").status_code in (303, 401)  # signed out: no data


def test_chart_axes_and_colours() -> None:
    assert [charts.nice_max(v) for v in (0, 1, 3, 4, 5, 11, 88, 1234)] == [4, 4, 4, 4, 8, 20, 100, 2000]
    assert charts.nice_max(302, whole=False) == 400 and charts.nice_max(0.3, whole=False) == 0.4
    day_list = charts.days(date(2026, 3, 1), date(2026, 3, 3))
    points = [("2026-03-01", f"m{i}", 10 - i) for i in range(10)] + [("2026-02-28", "before", 99)]
    chart = charts.stacked_by_day("c", "C", "requests", day_list, points)
    assert [name for _, name, _ in chart.legend] == [*(f"m{i}" for i in range(7)), "other"]
    assert chart.legend[-1] == (7, "other", 3 + 2 + 1) and chart.total == sum(range(1, 11))
    assert {b.series for b in chart.bars} == set(range(8)) and all(b.label == "2026-03-01" for b in chart.bars)
    kept = charts.stacked_by_day("t", "T", "tokens", day_list, [("2026-03-02", "m1", 50), ("2026-03-02", "m0", 1)],
                                 ["m0", "m1"])  # fmt: skip
    assert [(cls, name) for cls, name, _ in kept.legend] == [(0, "m0"), (1, "m1")]  # the colours of the first


def test_series_colours_stand_out_from_the_page_in_both_schemes() -> None:
    """WCAG 1.4.11: graphics at least 3:1 against what is around them (console.css's --bg, light and dark)."""
    from pathlib import Path

    from tests.console.browser.test_accessibility import _contrast

    def colours(block: str) -> dict[str, tuple[float, float, float]]:
        return {name: (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255)
                for name, h in re.findall(r"--([a-z0-9-]+):\s*#([0-9a-fA-F]{6})", block)}  # fmt: skip

    static = Path(charts.__file__).parent / "static"
    usage, console = (static / "usage.css").read_text(), (static / "console.css").read_text()
    split = "@media (prefers-color-scheme: dark)"
    light = colours(console[: console.index(split)]) | colours(usage[: usage.index(split)])
    dark = light | colours(console[console.index(split) :]) | colours(usage[usage.index(split) :])
    for scheme in (light, dark):
        assert [f"s{i}" for i in range(8)] == sorted(k for k in scheme if re.fullmatch(r"s\d", k))
        for i in range(8):
            assert _contrast(scheme[f"s{i}"], scheme["bg"]) >= 3, f"--s{i}"
