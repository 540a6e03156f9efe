"""The Anthropic Messages format: cache_control becomes cache points; usage counts cached tokens apart."""

from __future__ import annotations

from typing import Any

import pytest

from outcrop import errors
from outcrop.conversation import CachePoint, MessageStart, Usage
from outcrop.formats import anthropic_messages as am

CC = {"type": "ephemeral"}


def decode(body: dict[str, Any], top: Any = None) -> Any:
    return am.decode("m", am.Body(max_tokens=5, **body), top)


def test_cache_control_in_tools_system_and_messages() -> None:
    request = decode({
        "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": CC}],
        "system": [{"type": "text", "text": "ab"}, {"type": "text", "text": "cd", "cache_control": {**CC, "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": CC},
                                                   {"type": "text", "text": "y"}]}],
    })  # fmt: skip
    assert request.cache_points == (
        CachePoint("tools"),
        CachePoint("system", part=len("ab\n\ncd"), ttl_s=3600),
        CachePoint("message", 0, 0),
    )


def test_the_top_level_cache_control_marks_the_last_block() -> None:
    request = decode({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                   {"role": "user", "content": "c"}]}, top=CC)  # fmt: skip
    assert request.cache_points == (CachePoint("message", 2, 0),)


@pytest.mark.parametrize("cc", [{"type": "persistent"}, {"type": "ephemeral", "ttl": "2h"}, "yes"])
def test_bad_cache_control_is_refused(cc: Any) -> None:
    with pytest.raises(errors.InvalidRequest, match="cache_control"):
        decode({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": cc}]}]})


def test_usage_counts_cached_tokens_apart() -> None:
    assert am.usage(Usage(100, 0, cache_read_tokens=60, cache_write_tokens=30)) == {
        "input_tokens": 10, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60,
        "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 0}, "output_tokens": 0,
    }  # fmt: skip
    start = am.StreamEncoder("m", "msg_")(MessageStart(100, 60, 30, 3600))[0]
    assert start["message"]["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 0,
                                                           "ephemeral_1h_input_tokens": 30}  # fmt: skip
