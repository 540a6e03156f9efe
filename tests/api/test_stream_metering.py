"""A streamed answer's usage record names the dialect and operation that served it (the record is made as the last
event is sent, after the route's own task has returned: the app hands the route's Call on to it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.metering.usage import UsageRecorder
from outcrop.registry import Registry
from outcrop.store.schema import usage_records
from tests.conftest import serve_app

ECHO = "test.echo-v1:0"
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.mark.parametrize(
    ("path", "body", "dialect", "operation"),
    [
        ("/v1/chat/completions", {"model": ECHO, "messages": HELLO, "stream": True}, "openai", "chat_completions"),
        ("/v1/messages", {"model": ECHO, "messages": HELLO, "max_tokens": 20, "stream": True}, "anthropic", "messages"),
        (f"/model/{ECHO}/converse-stream", {"messages": [{"role": "user", "content": [{"text": "Hello there"}]}]},
         "bedrock", "converse_stream_op"),
    ],
)  # fmt: skip
def test_a_streamed_answer_is_metered_under_its_own_dialect(tmp_path: Path, path: str, body: dict[str, object],
                                                            dialect: str, operation: str) -> None:  # fmt: skip
    engine = store.connect(f"sqlite:///{tmp_path / 'o.db'}")
    settings = Settings(config_path=tmp_path / "c.toml", builtin_model=False, builtin_embedding_model=False,
                        models=(ModelSpec(id=ECHO, engine="echo", n_ctx=64),))  # fmt: skip
    registry = Registry(settings, {ECHO: EchoEngine(context_length=64)})
    with serve_app(build_app(settings, registry, usage=UsageRecorder(engine))) as url:
        r = httpx.post(url + path, json=body, headers={"anthropic-version": "2023-06-01"})
        assert r.status_code == 200, r.text
    with engine.connect() as db:
        rows = db.execute(select(usage_records.c.dialect, usage_records.c.operation, usage_records.c.status)).all()
    assert [tuple(row) for row in rows] == [(dialect, operation, "ok")]
