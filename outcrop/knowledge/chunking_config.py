"""Bedrock's chunkingConfiguration: decoded from its wire shape, validated as Bedrock validates it, encoded back.

Ranges are botocore's bedrock-agent service model (ChunkingConfiguration and its members): fixed-size maxTokens
>= 1 and overlapPercentage 1-99; hierarchical exactly two levels (parent, then child) of maxTokens 1-8192 and
overlapTokens >= 1; semantic maxTokens >= 1, bufferSize 0-1, breakpointPercentileThreshold 50-99. Beyond the
model, as the console does: a child no larger than its parent, an overlap smaller than the chunks it overlaps,
and (where the knowledge base passes its embedding model's limit) no embedded chunk larger than that limit.
No configuration is Bedrock's default: fixed-size, 300 tokens, 20 % overlap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from outcrop.errors import InvalidRequest

PATH = "vectorIngestionConfiguration.chunkingConfiguration"


@dataclass(frozen=True)
class FixedSize:
    max_tokens: int = 300
    overlap_percentage: int = 20


@dataclass(frozen=True)
class Hierarchical:
    parent_max_tokens: int = 1500
    child_max_tokens: int = 300
    overlap_tokens: int = 60


@dataclass(frozen=True)
class Semantic:
    max_tokens: int = 300
    buffer_size: int = 0
    breakpoint_percentile_threshold: int = 95


@dataclass(frozen=True)
class NoChunking:
    pass


ChunkingConfig = FixedSize | Hierarchical | Semantic | NoChunking
DEFAULT = FixedSize()

_STRATEGY_FIELDS = {
    "FIXED_SIZE": "fixedSizeChunkingConfiguration",
    "HIERARCHICAL": "hierarchicalChunkingConfiguration",
    "SEMANTIC": "semanticChunkingConfiguration",
    "NONE": None,
}


def _invalid(path: str, value: object, constraint: str) -> InvalidRequest:
    # Bedrock's (Coral's) wording for a constraint failure
    return InvalidRequest(
        f"1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: {constraint}",
        param=path,
    )


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(path, value, "Member must be a structure")
    return value


def _int(obj: Mapping[str, Any], key: str, path: str, lo: int, hi: int | None = None) -> int:
    where = f"{path}.{key}"
    if key not in obj or obj[key] is None:
        raise _invalid(where, None, "Member must not be null")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(where, value, "Member must be an integer")
    if value < lo:
        raise _invalid(where, value, f"Member must have value greater than or equal to {lo}")
    if hi is not None and value > hi:
        raise _invalid(where, value, f"Member must have value less than or equal to {hi}")
    return value


def _at_most(value: int, limit: int | None, where: str, what: str) -> None:
    if limit is not None and value > limit:
        raise InvalidRequest(f"{where} is {value}, more than {what} ({limit} tokens).", param=where)


def _fits_model(value: int, limit: int | None, where: str) -> None:
    if limit is not None and value > limit:
        message = f"{where} is {value}, but the knowledge base's embedding model reads at most {limit} tokens: "
        raise InvalidRequest(message + f"chunks that long would be cut short. Use at most {limit}.", param=where)


def decode(value: Mapping[str, Any] | None, *, max_tokens_limit: int | None = None, path: str = PATH) -> ChunkingConfig:
    """A ChunkingConfiguration from its wire shape; None is Bedrock's default. `max_tokens_limit` is the embedding
    model's input limit, when the caller knows it: chunks that get embedded may not exceed it."""
    if value is None:
        return DEFAULT
    obj = _object(value, path)
    strategy = obj.get("chunkingStrategy")
    if strategy not in _STRATEGY_FIELDS:
        allowed = ", ".join(_STRATEGY_FIELDS)
        raise _invalid(f"{path}.chunkingStrategy", strategy, f"Member must satisfy enum value set: [{allowed}]")
    wanted = _STRATEGY_FIELDS[strategy]
    for field in _STRATEGY_FIELDS.values():
        if field and field != wanted and obj.get(field) is not None:
            message = f"{path}.{field} is only allowed with its own chunkingStrategy, not {strategy}."
            raise InvalidRequest(message, param=f"{path}.{field}")
    if wanted is None:
        return NoChunking()
    if obj.get(wanted) is None:
        message = f"{path}.{wanted} is required when chunkingStrategy is {strategy}."
        raise InvalidRequest(message, param=f"{path}.{wanted}")
    where = f"{path}.{wanted}"
    inner = _object(obj[wanted], where)
    if strategy == "FIXED_SIZE":
        fixed = FixedSize(_int(inner, "maxTokens", where, 1), _int(inner, "overlapPercentage", where, 1, 99))
        _fits_model(fixed.max_tokens, max_tokens_limit, f"{where}.maxTokens")
        return fixed
    if strategy == "SEMANTIC":
        semantic = Semantic(
            _int(inner, "maxTokens", where, 1),
            _int(inner, "bufferSize", where, 0, 1),
            _int(inner, "breakpointPercentileThreshold", where, 50, 99),
        )
        _fits_model(semantic.max_tokens, max_tokens_limit, f"{where}.maxTokens")
        return semantic
    levels = inner.get("levelConfigurations")
    if not isinstance(levels, list) or len(levels) != 2:
        n = len(levels) if isinstance(levels, list) else levels
        raise _invalid(f"{where}.levelConfigurations", n, "Member must have length of exactly 2 (parent, then child)")
    level_paths = [f"{where}.levelConfigurations.{i}" for i in (1, 2)]
    pairs = zip(levels, level_paths, strict=True)
    parent, child = (_int(_object(lv, at), "maxTokens", at, 1, 8192) for lv, at in pairs)
    overlap = _int(inner, "overlapTokens", where, 1)
    _at_most(child, parent, f"{where}.levelConfigurations.2.maxTokens", "the parent level's maxTokens")
    _at_most(overlap, child - 1, f"{where}.overlapTokens", "one less than the child level's maxTokens")
    _fits_model(child, max_tokens_limit, f"{where}.levelConfigurations.2.maxTokens")  # parents are not embedded
    return Hierarchical(parent, child, overlap)


def encode(config: ChunkingConfig) -> dict[str, Any]:
    """The wire shape of `config`, as GetDataSource returns it."""
    if isinstance(config, FixedSize):
        return {
            "chunkingStrategy": "FIXED_SIZE",
            "fixedSizeChunkingConfiguration": {
                "maxTokens": config.max_tokens,
                "overlapPercentage": config.overlap_percentage,
            },
        }
    if isinstance(config, Hierarchical):
        return {
            "chunkingStrategy": "HIERARCHICAL",
            "hierarchicalChunkingConfiguration": {
                "levelConfigurations": [
                    {"maxTokens": config.parent_max_tokens},
                    {"maxTokens": config.child_max_tokens},
                ],
                "overlapTokens": config.overlap_tokens,
            },
        }
    if isinstance(config, Semantic):
        return {
            "chunkingStrategy": "SEMANTIC",
            "semanticChunkingConfiguration": {
                "maxTokens": config.max_tokens,
                "bufferSize": config.buffer_size,
                "breakpointPercentileThreshold": config.breakpoint_percentile_threshold,
            },
        }
    return {"chunkingStrategy": "NONE"}
