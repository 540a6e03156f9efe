"""Model ids in every form Bedrock callers use resolve to the configured model."""

from __future__ import annotations

from pathlib import Path

import pytest

from outcrop import errors
from outcrop.config import ModelSpec, Settings
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.registry import Registry, provider_of

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    spec = ModelSpec(id=CLAUDE, path="/m.gguf", aliases=("meta.llama3-1-8b-instruct-v1:0",))
    return Registry(Settings(config_path=tmp_path / "c.toml", models=(spec,)))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (CLAUDE, CLAUDE),
        ("us.anthropic.claude-3-haiku-20240307-v1:0", CLAUDE),
        ("apac.anthropic.claude-3-haiku-20240307-v1:0", CLAUDE),
        ("arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", CLAUDE),
        ("arn:aws:bedrock:us-east-1:111122223333:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0", CLAUDE),
        ("arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", CLAUDE),
        ("meta.llama3-1-8b-instruct-v1:0", CLAUDE),
        ("us.meta.llama3-1-8b-instruct-v1:0", CLAUDE),
        (BUILTIN_MODEL_ID, BUILTIN_MODEL_ID),
    ],
)
def test_resolve(registry: Registry, name: str, expected: str) -> None:
    assert registry.resolve(name) == expected


@pytest.mark.parametrize("name", ["anthropic.claude-v2", "us.nope", "arn:aws:bedrock:::foundation-model/x", ""])
def test_unknown(registry: Registry, name: str) -> None:
    with pytest.raises(errors.NotFound):
        registry.resolve(name)


def test_provider_of() -> None:
    assert provider_of("us.anthropic.claude-3-haiku-20240307-v1:0") == "anthropic"
    assert provider_of("meta.llama3-1-8b-instruct-v1:0") == "meta"
    assert provider_of("mymodel") == "custom"


def test_builtin_can_be_switched_off(tmp_path: Path) -> None:
    r = Registry(Settings(config_path=tmp_path / "c.toml", builtin_model=False, builtin_embedding_model=False))
    assert r.names() == []
