"""HYBRID's score fusion (vectors/base.fuse_scores): each side scaled to [0, 1] over its candidates, averaged."""

from __future__ import annotations

import pytest

from outcrop.knowledge.vectors.base import fuse_scores


def test_scores_are_scaled_per_side_and_averaged() -> None:
    semantic = [("a", 0.9), ("b", 0.8), ("c", 0.5)]
    keyword = [("c", 12.0), ("a", 3.0)]  # BM25: any scale
    fused = dict(fuse_scores([semantic, keyword]))
    assert fused == pytest.approx({"a": (1.0 + 0.0) / 2, "b": 0.75 / 2, "c": (0.0 + 1.0) / 2})


def test_first_on_both_sides_scores_one_and_a_missing_side_counts_zero() -> None:
    fused = fuse_scores([[("a", 0.7), ("b", 0.6)], [("a", 5.0), ("c", 1.0)]])
    assert fused[0] == ("a", 1.0)
    assert dict(fused)["b"] == 0.0 and dict(fused)["c"] == 0.0


def test_how_far_apart_scores_are_counts_where_ranks_would_tie() -> None:
    # rank fusion would put x and y level (each first once, second once); scores say x is far ahead on keywords
    fused = fuse_scores([[("y", 0.80), ("x", 0.79), ("w", 0.30)], [("x", 20.0), ("y", 2.0), ("z", 1.0)]])
    assert [key for key, _ in fused][:2] == ["x", "y"]


def test_a_side_of_equal_scores_or_no_candidates() -> None:
    assert fuse_scores([[("a", 0.5), ("b", 0.5)], []]) == [("a", 0.5), ("b", 0.5)]
    assert fuse_scores([[], []]) == []
