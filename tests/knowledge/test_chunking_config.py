from __future__ import annotations

import pytest

from outcrop.errors import InvalidRequest
from outcrop.knowledge.chunking_config import DEFAULT, FixedSize, Hierarchical, NoChunking, Semantic, decode, encode

P = "vectorIngestionConfiguration.chunkingConfiguration"

VALID = [
    (None, DEFAULT),
    ({"chunkingStrategy": "NONE"}, NoChunking()),
    (
        {
            "chunkingStrategy": "FIXED_SIZE",
            "fixedSizeChunkingConfiguration": {"maxTokens": 512, "overlapPercentage": 1},
        },
        FixedSize(512, 1),
    ),
    (
        {"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": {"maxTokens": 1, "overlapPercentage": 99}},
        FixedSize(1, 99),
    ),
    (
        {
            "chunkingStrategy": "HIERARCHICAL",
            "hierarchicalChunkingConfiguration": {
                "levelConfigurations": [{"maxTokens": 1500}, {"maxTokens": 300}],
                "overlapTokens": 60,
            },
        },
        Hierarchical(1500, 300, 60),
    ),
    (
        {
            "chunkingStrategy": "SEMANTIC",
            "semanticChunkingConfiguration": {"maxTokens": 300, "bufferSize": 1, "breakpointPercentileThreshold": 50},
        },
        Semantic(300, 1, 50),
    ),
]


@pytest.mark.parametrize(("wire", "config"), VALID)
def test_valid_configurations_round_trip(wire, config) -> None:
    assert decode(wire) == config
    if wire is not None:
        assert encode(config) == wire


def _fixed(**inner):
    return {"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": inner}


def _semantic(**inner):
    return {
        "chunkingStrategy": "SEMANTIC",
        "semanticChunkingConfiguration": {"maxTokens": 300, "bufferSize": 0, "breakpointPercentileThreshold": 95}
        | inner,
    }


def _hier(parent=1500, child=300, overlap=60, levels=None):
    levels = levels if levels is not None else [{"maxTokens": parent}, {"maxTokens": child}]
    return {
        "chunkingStrategy": "HIERARCHICAL",
        "hierarchicalChunkingConfiguration": {"levelConfigurations": levels, "overlapTokens": overlap},
    }


INVALID = [
    ({"chunkingStrategy": "WORDS"}, f"{P}.chunkingStrategy", "enum value set"),
    ({}, f"{P}.chunkingStrategy", "enum value set"),
    ({"chunkingStrategy": "FIXED_SIZE"}, f"{P}.fixedSizeChunkingConfiguration", "required"),
    (
        _fixed(maxTokens=0, overlapPercentage=20),
        f"{P}.fixedSizeChunkingConfiguration.maxTokens",
        "greater than or equal to 1",
    ),
    (
        _fixed(maxTokens=300, overlapPercentage=0),
        f"{P}.fixedSizeChunkingConfiguration.overlapPercentage",
        "greater than or equal to 1",
    ),
    (
        _fixed(maxTokens=300, overlapPercentage=100),
        f"{P}.fixedSizeChunkingConfiguration.overlapPercentage",
        "less than or equal to 99",
    ),
    (_fixed(maxTokens=300), f"{P}.fixedSizeChunkingConfiguration.overlapPercentage", "must not be null"),
    (_fixed(maxTokens="300", overlapPercentage=20), f"{P}.fixedSizeChunkingConfiguration.maxTokens", "integer"),
    (_fixed(maxTokens=True, overlapPercentage=20), f"{P}.fixedSizeChunkingConfiguration.maxTokens", "integer"),
    (
        {"chunkingStrategy": "NONE", "fixedSizeChunkingConfiguration": {"maxTokens": 3, "overlapPercentage": 3}},
        f"{P}.fixedSizeChunkingConfiguration",
        "only allowed",
    ),
    (_semantic(bufferSize=2), f"{P}.semanticChunkingConfiguration.bufferSize", "less than or equal to 1"),
    (
        _semantic(breakpointPercentileThreshold=49),
        f"{P}.semanticChunkingConfiguration.breakpointPercentileThreshold",
        "greater than or equal to 50",
    ),
    (
        _semantic(breakpointPercentileThreshold=100),
        f"{P}.semanticChunkingConfiguration.breakpointPercentileThreshold",
        "less than or equal to 99",
    ),
    (_hier(levels=[{"maxTokens": 300}]), f"{P}.hierarchicalChunkingConfiguration.levelConfigurations", "exactly 2"),
    (
        _hier(parent=8193),
        f"{P}.hierarchicalChunkingConfiguration.levelConfigurations.1.maxTokens",
        "less than or equal to 8192",
    ),
    (
        _hier(child=0),
        f"{P}.hierarchicalChunkingConfiguration.levelConfigurations.2.maxTokens",
        "greater than or equal to 1",
    ),
    (_hier(overlap=0), f"{P}.hierarchicalChunkingConfiguration.overlapTokens", "greater than or equal to 1"),
    (
        _hier(parent=200, child=300),
        f"{P}.hierarchicalChunkingConfiguration.levelConfigurations.2.maxTokens",
        "parent level",
    ),
    (_hier(child=60, overlap=60), f"{P}.hierarchicalChunkingConfiguration.overlapTokens", "child level"),
]


@pytest.mark.parametrize(("wire", "param", "message"), INVALID)
def test_invalid_configurations_say_where_and_why(wire, param, message) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        decode(wire)
    assert info.value.param == param
    assert param in info.value.message


def test_the_embedding_models_limit() -> None:
    assert decode(_fixed(maxTokens=256, overlapPercentage=20), max_tokens_limit=256) == FixedSize(256, 20)
    with pytest.raises(InvalidRequest, match="embedding model reads at most"):
        decode(_fixed(maxTokens=257, overlapPercentage=20), max_tokens_limit=256)
    with pytest.raises(InvalidRequest, match="embedding model reads at most"):
        decode(_semantic(maxTokens=1000), max_tokens_limit=512)
    # only the children are embedded: a parent may be larger than the model takes
    assert decode(_hier(parent=2000, child=256), max_tokens_limit=256) == Hierarchical(2000, 256, 60)
    with pytest.raises(InvalidRequest, match="embedding model reads at most"):
        decode(_hier(child=300), max_tokens_limit=256)
