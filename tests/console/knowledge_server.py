"""A server with keys for the Knowledge bases page's tests (HTTP and browser): the built-in MiniLM embeddings, a
scripted chat model (answers written per test, so citations can be checked exactly), and a local folder standing
for the S3 bucket `rock-notes` (<knowledge_dir>/folders/rock-notes) holding a small corpus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outcrop.cli import assemble
from outcrop.config import ModelSpec, Settings
from outcrop.models import BUILTIN_EMBEDDING_ID, builtin_embedding_available
from tests.api.bedrock_agent_runtime.conftest import SCRIPTED, ScriptedEngine
from tests.conftest import serve_app
from tests.console.conftest import Console, Served

BUCKET = "rock-notes"
CORPUS = {
    "notes/basalt.md": "# Basalt\n\nThe hexagonal basalt columns of the Giant's Causeway formed as a thick lava flow "
                       "cooled slowly and cracked.\n",
    "notes/granite.md": "# Granite\n\nGranite is a coarse-grained igneous rock of quartz and feldspar, often used for "
                        "kitchen countertops.\n",
    "notes/limestone.md": "# Limestone\n\nLimestone forms from the shells of marine creatures and fizzes in dilute "
                          "hydrochloric acid.\n",
}  # fmt: skip

needs_embeddings = pytest.mark.skipif(
    not builtin_embedding_available(), reason="the built-in embedding model is needed"
)


def kb_server(home: Path, env: pytest.MonkeyPatch) -> Iterator[Served]:
    """The server, with root (administrator) and alice (member); extra["engine"] is the scripted engine."""
    env.setenv("OUTCROP_HOME", str(home))
    folder = home / "knowledge" / "folders" / BUCKET
    for key, text in CORPUS.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(text)
    engine = ScriptedEngine()
    settings = Settings(config_path=home / "config.toml", auth="keys", builtin_model=False,
                        builtin_embedding_model=True, knowledge_dir=str(home / "knowledge"),
                        models=(ModelSpec(id=SCRIPTED, engine="echo", n_ctx=16384),))  # fmt: skip
    app, keyring = assemble(settings, "keys", {SCRIPTED: engine})
    keyring.ensure_principal("root", admin=True)
    keys = {name: keyring.create_api_key(name)[1] for name in ("root", "alice")}
    aws = keyring.create_aws_key("root", "console test")
    with serve_app(app) as url:
        yield Served(url, keys, aws, keyring=keyring, app=app, extra={"engine": engine})


def create_ingested(c: Console, name: str = "rocks") -> tuple[str, str]:
    """Through the console's forms, as an administrator: a knowledge base on MiniLM, an S3 data source on the
    local bucket folder, one ingestion job run to COMPLETE. (knowledge base id, data source id)"""
    r = c.post_form("/console/knowledge-bases", {"name": name, "model": BUILTIN_EMBEDDING_ID,
                                                  "description": "Notes on rocks"})  # fmt: skip
    assert r.status_code == 303, r.text
    kb_id = r.headers["location"].split("?")[0].rsplit("/", 1)[1]
    r = c.post_form(f"/console/knowledge-bases/{kb_id}/data-sources", {"name": "notes", "bucket": BUCKET,
                                                                        "prefix": "notes/"})  # fmt: skip
    assert r.status_code == 303, r.text
    ds_id = c.http.get(f"/console/knowledge-bases/{kb_id}").text.split('data-source="', 1)[1].split('"', 1)[0]
    r = c.post_form(f"/console/knowledge-bases/{kb_id}/data-sources/{ds_id}/ingestion-jobs", {})
    assert r.status_code == 303, r.text
    wait_ingested(c, kb_id)
    return kb_id, ds_id


def wait_ingested(c: Console, kb_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 300
    while True:
        jobs: list[dict[str, Any]] = c.http.get(f"/console/knowledge-bases/{kb_id}/ingestion-jobs").json()["jobs"]
        if jobs and all(j["status"] in ("COMPLETE", "FAILED", "STOPPED") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)


__all__ = ["BUCKET", "BUILTIN_EMBEDDING_ID", "CORPUS", "SCRIPTED", "create_ingested", "kb_server", "needs_embeddings"]
