"""The Knowledge bases and Batch pages in a real Chromium: the Retrieve test panel shows ranked chunks for a query
on a small ingested corpus and RetrieveAndGenerate's answer links each cited span to its chunk; a small batch on
the tiny model is submitted from a file, seen to complete, and its output downloaded; both pages at phone width.

(The knowledge-base tests come first: the two servers each set OUTCROP_HOME while they start.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from outcrop.models import BUILTIN_MODEL_ID
from tests.api.bedrock_agent_runtime.conftest import number_of
from tests.console.browser.conftest import sign_in
from tests.console.conftest import Console, Served
from tests.console.knowledge_server import SCRIPTED, create_ingested, kb_server, needs_embeddings


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, env: pytest.MonkeyPatch) -> Iterator[tuple[Served, str]]:
    """The knowledge-base server and the id of its ingested knowledge base."""
    for served in kb_server(tmp_path_factory.mktemp("console-kb-browser"), env):
        c = Console(served.url)
        assert c.sign_in(served.keys["root"]).status_code == 303
        kb_id, _ = create_ingested(c)
        c.close()
        yield served, kb_id


def _run(page: Any, query: str) -> None:
    page.get_by_label("Query").fill(query)
    page.get_by_role("button", name="Run").click()


@needs_embeddings
def test_the_retrieve_panel_shows_ranked_chunks_with_their_source(kb: tuple[Served, str], page: Any) -> None:
    served, _ = kb
    sign_in(page, served.url, served.keys["alice"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Knowledge bases").click()
    page.get_by_role("link", name="rocks").click()
    assert page.get_by_role("heading", name="rocks", exact=True).is_visible()
    assert page.locator('tr[data-job] [data-field="status"]').first.inner_text() == "COMPLETE"
    page.get_by_label("Results").fill("2")
    _run(page, "Which rock fizzes in acid?")
    results = page.get_by_role("list", name="Retrieved chunks").get_by_role("listitem")
    results.first.wait_for()
    assert results.count() == 2
    assert "fizzes in dilute" in results.first.locator(".chunk").inner_text()
    assert results.first.locator(".where").inner_text() == "s3://rock-notes/notes/limestone.md"
    assert results.first.locator(".score").inner_text().startswith("score 0.")
    assert page.get_by_role("heading", name="2 results").is_visible()


@needs_embeddings
def test_retrieve_and_generate_links_each_cited_span_to_its_chunk(kb: tuple[Served, str], page: Any) -> None:
    served, kb_id = kb
    served.extra["engine"].script = lambda r: f"Granite makes countertops [{number_of(r, 'countertops')}]."
    sign_in(page, served.url, served.keys["alice"])
    page.goto(f"{served.url}/console/knowledge-bases/{kb_id}")
    page.get_by_label("Retrieve and generate").check()
    page.get_by_label("Model", exact=True).select_option(SCRIPTED)
    _run(page, "What is granite used for?")
    answer = page.locator(".answer")
    answer.wait_for()
    assert answer.inner_text().startswith("Granite makes countertops.")
    assert page.locator("mark.cited").inner_text() == "Granite makes countertops."
    link = page.get_by_role("link", name="source 1")
    link.click()
    source = page.locator("#source-1")
    assert page.url.endswith("#source-1")
    assert "kitchen countertops" in source.locator(".chunk").inner_text()
    assert source.locator(".where").inner_text() == "s3://rock-notes/notes/granite.md"
    served.extra["engine"].script = None


@needs_embeddings
def test_the_knowledge_base_page_at_phone_width(kb: tuple[Served, str], browser: Any) -> None:
    served, kb_id = kb
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        sign_in(page, served.url, served.keys["root"])
        for path in ("/console/knowledge-bases", f"/console/knowledge-bases/{kb_id}"):
            page.goto(served.url + path)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        _run(page, "hexagonal columns")
        first = page.get_by_role("list", name="Retrieved chunks").get_by_role("listitem").first
        first.wait_for()
        assert first.locator(".where").inner_text() == "s3://rock-notes/notes/basalt.md"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        phone.close()


def _records(n: int) -> bytes:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Name a rock."}]}  # fmt: skip
    return "".join(json.dumps({"recordId": f"R{i}", "modelInput": body}) + "\n" for i in range(n)).encode()


def test_a_small_batch_completes_and_its_output_downloads(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["alice"])
    page.goto(f"{keyed.url}/console/batch")
    page.get_by_label("Records (JSONL)").set_input_files(
        {"name": "rocks.jsonl", "mimeType": "application/jsonl", "buffer": _records(3)}
    )
    page.get_by_label("Model", exact=True).select_option(BUILTIN_MODEL_ID)
    page.get_by_label("Job name").fill("browser-batch")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/console/batch?submitted=*")
    row = page.locator("tr", has_text="browser-batch")
    assert page.get_by_role("status").filter(has_text="submitted").is_visible()
    done = row.get_by_role("link", name="Output of browser-batch")  # appears once the job has ended
    done.wait_for()
    assert row.locator('[data-field="status"]').inner_text() == "Completed"
    assert row.locator("progress").evaluate("p => [p.value, p.max]") == [3, 3]
    assert "3 of 3 processed: 3 succeeded, 0 failed" in row.inner_text()
    with page.expect_download() as info:
        done.click()
    download = info.value
    assert download.suggested_filename == "browser-batch-output.jsonl"
    lines = [json.loads(x) for x in open(download.path()).read().splitlines()]  # noqa: SIM115
    assert [x["recordId"] for x in lines] == ["R0", "R1", "R2"]
    assert all(x["modelOutput"]["content"][0]["text"] for x in lines)


def test_a_refused_file_is_said_on_the_page_and_the_batch_page_fits_a_phone(keyed: Served, browser: Any) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        sign_in(page, keyed.url, keyed.keys["alice"])
        page.goto(f"{keyed.url}/console/batch")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.get_by_label("Records (JSONL)").set_input_files(
            {"name": "wrong.jsonl", "mimeType": "application/jsonl", "buffer": b'{"question": "hi"}\n'}
        )
        page.get_by_role("button", name="Submit").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "neither batch format" in alert.inner_text()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        phone.close()
