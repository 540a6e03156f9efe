"""Citation markers stripped and mapped to segments, however the answer is cut into deltas; attribution by
overlap where the model cites nothing."""

from __future__ import annotations

import pytest

from outcrop.knowledge.citations import CitationParser, Segment, attribute

PASSAGES = [
    "Paris is the capital of France and its largest city.",
    "The Zephyr 3000 drill costs 199 dollars.",
    "Tomato plants need six hours of sunlight.",
]


def _run(answer: str, pieces: list[str] | None = None, n: int = 3) -> tuple[str, list[tuple[str, tuple[int, ...]]]]:
    parser = CitationParser(n, PASSAGES[:n])
    text, segments = "", []
    for piece in pieces if pieces is not None else [answer]:
        out, done = parser.feed(piece)
        text += out
        segments += done
    out, done = parser.finish()
    text += out
    segments += done
    assert text == parser.text
    return text, [(text[s.start : s.end], s.refs) for s in segments]


ANSWERS = [
    "Paris is the capital [1]. The drill costs 199 dollars [2][1]. Thanks!",
    "Paris is the capital [1, 3], and tomatoes need sun [3].\nNew line here [2]",
    "In [2024] the array a[7] held 3 [ items [1",
    "No markers at all. The Zephyr 3000 drill costs 199 dollars.   ",
    "Ends with a marker [2]",
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_deltas_of_any_size_give_the_same_result(answer: str) -> None:
    whole = _run(answer)
    for size in (1, 2, 3, 7):
        assert _run(answer, [answer[i : i + size] for i in range(0, len(answer), size)]) == whole


def test_markers_are_stripped_and_cite_the_text_before_them() -> None:
    text, segments = _run(ANSWERS[0])
    assert text == "Paris is the capital. The drill costs 199 dollars. Thanks!"
    assert segments == [("Paris is the capital.", (1,)), ("The drill costs 199 dollars.", (2, 1)), ("Thanks!", ())]
    text, segments = _run(ANSWERS[1])
    assert text == "Paris is the capital, and tomatoes need sun.\nNew line here"
    assert segments == [("Paris is the capital,", (1, 3)), ("and tomatoes need sun.", (3,)), ("New line here", (2,))]


def test_numbers_that_are_not_passages_stay_text() -> None:
    # [2024] and [7] name no passage; "[1" never closes: all stay as written
    assert _run(ANSWERS[2]) == (ANSWERS[2], [(ANSWERS[2], ())])


def test_trailing_whitespace_is_dropped_and_a_final_marker_closes_its_segment() -> None:
    text, segments = _run(ANSWERS[4])
    assert text == "Ends with a marker" and segments == [("Ends with a marker", (2,))]
    text, segments = _run(ANSWERS[3])
    assert text == ANSWERS[3].rstrip()
    assert segments == [("No markers at all.", ()), ("The Zephyr 3000 drill costs 199 dollars.", (2,))]


def test_uncited_answers_are_attributed_by_overlap() -> None:
    _, segments = _run("Paris is the capital of France. It is also its largest city. I like turtles.")
    assert segments == [("Paris is the capital of France. It is also its largest city.", (1,)), ("I like turtles.", ())]


def test_attribute_merges_neighbours_citing_the_same_passage() -> None:
    text = "The drill costs 199 dollars. The Zephyr 3000 drill is sold for 199 dollars. Tomatoes need sunlight."
    assert attribute(text, PASSAGES) == [Segment(0, 75, (2,)), Segment(76, 99, (3,))]
