"""The vector store seam: the same tests on the embedded store (searching its in-memory mirror, and searching the
file with sqlite-vec + FTS5) and on PostgreSQL + pgvector."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from outcrop.errors import InvalidRequest
from outcrop.knowledge.vectors import (
    Chunk,
    DimensionMismatch,
    IndexNotFound,
    Query,
    SearchType,
    VectorStore,
    fuse,
    open_store,
    parse_filter,
)
from outcrop.knowledge.vectors.sqlite_store import SqliteVectorStore
from tests.conftest import free_port

DIMS = 8


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    from tests.knowledge.pgvector import pgvector_server

    with pgvector_server(free_port()) as url:
        yield url


@pytest.fixture(params=["sqlite", "sqlite-file", "pgvector"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], VectorStore]]:
    """Opens a store on one location (a second call: another store object on the same data, as another process)."""
    if request.param == "pgvector":
        from tests.postgres import fresh_database

        admin = request.getfixturevalue("pgvector_url")
        location: str | Path = fresh_database(admin, f"v_{abs(hash(request.node.nodeid)) % 10**12}")
    else:
        location = tmp_path / "knowledge"
    opened: list[VectorStore] = []

    def open_one() -> VectorStore:
        if request.param == "sqlite-file":
            opened.append(SqliteVectorStore(Path(location), memory=False))
        else:
            opened.append(open_store(location))
        return opened[-1]

    yield open_one
    for s in opened:
        s.close()


@pytest.fixture
def store(reopen: Callable[[], VectorStore]) -> VectorStore:
    s = reopen()
    s.create_index("KB1", DIMS)
    return s


def axis(i: int, j: int | None = None, w: float = 0.0) -> list[float]:
    """A unit vector along axis i (tilted towards axis j by w): small, exact vectors for tests."""
    v = [0.0] * DIMS
    v[i] = 1.0
    if j is not None:
        v[j] = w
    return v


def chunk(doc: str, n: int, text: str, vector: list[float], **metadata: Any) -> Chunk:
    meta = {k: tuple(v) if isinstance(v, list) else v for k, v in metadata.items()}
    return Chunk(f"{doc}#{n}", doc, text, vector, meta, {"type": "S3", "s3Location": {"uri": f"s3://b/{doc}"}})


# a small library: each document one chunk, with metadata of every type
LIBRARY = [
    chunk("a", 0, "Volcanoes erupt molten rock called lava", axis(0), genre="geology", year=2019, public=True,
          tags=["earth", "science"], title="Alpha report"),
    chunk("b", 0, "Glaciers carve valleys over many centuries", axis(1), genre="geology", year=2021, public=False,
          tags=["ice"], title="Beta notes"),
    chunk("c", 0, "The stock market fell sharply on Monday", axis(2), genre="finance", year=2023, public=True,
          tags=["markets", "science"], title="Gamma brief"),
    chunk("d", 0, "Central banks raise interest rates", axis(3), genre="finance", year=2024.5, title="Delta alpha"),
]  # fmt: skip


@pytest.fixture
def library(store: VectorStore) -> VectorStore:
    for c in LIBRARY:
        store.upsert_document("KB1", c.document_id, [c])
    return store


def docs(store: VectorStore, raw_filter: dict[str, Any] | None = None, **kw: Any) -> set[str]:
    q = Query(vector=kw.pop("vector", axis(0)), number_of_results=kw.pop("n", 10),
              filter=None if raw_filter is None else parse_filter(raw_filter), **kw)  # fmt: skip
    return {h.document_id for h in store.search("KB1", q)}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"equals": {"key": "genre", "value": "geology"}}, {"a", "b"}),
        ({"equals": {"key": "year", "value": 2021}}, {"b"}),
        ({"equals": {"key": "public", "value": True}}, {"a", "c"}),
        ({"equals": {"key": "year", "value": "2021"}}, set()),  # a string never equals a number
        ({"equals": {"key": "tags", "value": ["ice"]}}, {"b"}),
        ({"notEquals": {"key": "genre", "value": "geology"}}, {"c", "d"}),
        ({"notEquals": {"key": "public", "value": True}}, {"b", "d"}),  # d has no `public`: Bedrock returns it
        ({"greaterThan": {"key": "year", "value": 2021}}, {"c", "d"}),
        ({"greaterThanOrEquals": {"key": "year", "value": 2021}}, {"b", "c", "d"}),
        ({"lessThan": {"key": "year", "value": 2021}}, {"a"}),
        ({"lessThanOrEquals": {"key": "year", "value": 2021}}, {"a", "b"}),
        ({"greaterThan": {"key": "year", "value": 2024}}, {"d"}),  # a fractional number
        ({"greaterThan": {"key": "title", "value": "Beta"}}, {"b", "c", "d"}),  # strings compare with strings
        ({"in": {"key": "genre", "value": ["finance", "poetry"]}}, {"c", "d"}),
        ({"in": {"key": "year", "value": [2019, 2023]}}, {"a", "c"}),
        ({"notIn": {"key": "year", "value": [2019, 2023]}}, {"b", "d"}),
        ({"notIn": {"key": "public", "value": [False]}}, {"a", "c"}),  # needs the key
        ({"startsWith": {"key": "title", "value": "Al"}}, {"a"}),
        ({"startsWith": {"key": "title", "value": "%"}}, set()),  # no wildcards
        ({"listContains": {"key": "tags", "value": "science"}}, {"a", "c"}),
        ({"listContains": {"key": "genre", "value": "geology"}}, set()),  # not a list
        ({"stringContains": {"key": "title", "value": "alpha"}}, {"d"}),  # case-sensitive, as Bedrock
        ({"stringContains": {"key": "tags", "value": "cie"}}, {"a", "c"}),  # a list member holding it
        (
            {
                "andAll": [
                    {"equals": {"key": "genre", "value": "geology"}},
                    {"greaterThan": {"key": "year", "value": 2020}},
                ]
            },
            {"b"},
        ),
        (
            {"orAll": [{"equals": {"key": "genre", "value": "geology"}}, {"equals": {"key": "year", "value": 2023}}]},
            {"a", "b", "c"},
        ),
        (
            {
                "orAll": [
                    {
                        "andAll": [
                            {"equals": {"key": "public", "value": True}},
                            {"lessThan": {"key": "year", "value": 2020}},
                        ]
                    },
                    {"notEquals": {"key": "genre", "value": "finance"}},
                ]
            },
            {"a", "b"},
        ),
        ({"equals": {"key": "missing", "value": 1}}, set()),
    ],
)
def test_filters_on_every_search_type(library: VectorStore, raw: dict[str, Any], expected: set[str]) -> None:
    assert docs(library, raw) == expected
    assert docs(library, raw, search_type=SearchType.HYBRID, text="lava glaciers market banks") == expected
    # KEYWORD sees only the documents whose words match; the filter still decides among them
    assert docs(library, raw, search_type=SearchType.KEYWORD, text="lava glaciers market banks") == expected


def test_filter_keys_with_odd_characters(store: VectorStore) -> None:
    store.upsert_document("KB1", "x", [chunk("x", 0, "text", axis(0), **{'a.b"c': "v", "$d": 1})])
    assert docs(store, {"equals": {"key": 'a.b"c', "value": "v"}}) == {"x"}
    assert docs(store, {"equals": {"key": "$d", "value": 1}}) == {"x"}


@pytest.mark.parametrize(
    "raw",
    [
        {}, {"equals": {"key": "a"}}, {"nearly": {"key": "a", "value": 1}}, {"andAll": [{"equals": {"key": "a", "value": 1}}]},
        {"in": {"key": "a", "value": "x"}}, {"greaterThan": {"key": "a", "value": True}},
        {"startsWith": {"key": "a", "value": 3}}, {"equals": {"key": "", "value": 1}},
        {"equals": {"key": "a", "value": 1}, "notEquals": {"key": "a", "value": 1}},
    ],
)  # fmt: skip
def test_bad_filters_are_validation_errors(raw: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        parse_filter(raw)


def test_semantic_ranks_by_cosine_and_returns_what_was_stored(library: VectorStore) -> None:
    got = library.search("KB1", Query(vector=axis(1, 0, 0.5), number_of_results=2))
    assert [h.document_id for h in got] == ["b", "a"]
    assert got[0].score > got[1].score and 0 <= got[1].score <= 1
    assert got[0].text == "Glaciers carve valleys over many centuries"
    assert got[0].metadata == {"genre": "geology", "year": 2021, "public": False, "tags": ("ice",),
                               "title": "Beta notes"}  # fmt: skip
    assert got[0].location == {"type": "S3", "s3Location": {"uri": "s3://b/b"}}
    assert got[0].chunk_id == "b#0"


def test_number_of_results(library: VectorStore) -> None:
    assert len(library.search("KB1", Query(vector=axis(0), number_of_results=3))) == 3
    with pytest.raises(InvalidRequest):
        library.search("KB1", Query(vector=axis(0), number_of_results=0))


def test_hybrid_finds_a_keyword_only_match_and_a_semantic_only_match(store: VectorStore) -> None:
    store.upsert_document("KB1", "kw", [chunk("kw", 0, "The zeppelin manifest lists cargo", axis(5))])
    store.upsert_document("KB1", "sem", [chunk("sem", 0, "Airships carried freight", axis(4))])
    for i in range(20):  # distractors: none holds the query's words, all closer to the query than `kw`
        store.upsert_document("KB1", f"n{i}", [chunk(f"n{i}", 0, f"unrelated filler {i}", axis(4, 6, 0.3 + i / 40))])
    q: dict[str, Any] = {"text": "zeppelin manifest", "vector": axis(4), "n": 5}
    assert "kw" not in docs(store, search_type=SearchType.SEMANTIC, **dict(q))
    assert docs(store, search_type=SearchType.KEYWORD, **dict(q)) == {"kw"}
    hybrid = docs(store, search_type=SearchType.HYBRID, **dict(q))
    assert {"kw", "sem"} <= hybrid


def test_keyword_search_stems_and_ignores_query_syntax(library: VectorStore) -> None:
    assert docs(library, search_type=SearchType.KEYWORD, text="erupting volcano") == {"a"}
    assert docs(library, search_type=SearchType.KEYWORD, text='"rates" OR NEAR( AND *') == {"d"}
    assert docs(library, search_type=SearchType.KEYWORD, text="") == set()


def test_reupserting_a_document_replaces_its_chunks(store: VectorStore) -> None:
    store.upsert_document("KB1", "doc", [chunk("doc", i, f"old text {i}", axis(i)) for i in range(3)])
    store.upsert_document("KB1", "other", [chunk("other", 0, "other text", axis(0))])
    assert store.count("KB1", "doc") == 3
    store.upsert_document("KB1", "doc", [chunk("doc", 0, "new text", axis(7)), chunk("doc", 9, "newer", axis(6))])
    assert store.count("KB1", "doc") == 2 and store.count("KB1") == 3
    texts = [h.text for h in store.search("KB1", Query(vector=axis(0), number_of_results=10)) if h.document_id == "doc"]
    assert sorted(texts) == ["new text", "newer"]
    assert docs(store, search_type=SearchType.KEYWORD, text="old") == set()  # the keyword index forgot them too
    assert store.document_ids("KB1") == ["doc", "other"]


def test_a_failed_upsert_leaves_the_old_chunks(store: VectorStore) -> None:
    store.upsert_document("KB1", "doc", [chunk("doc", 0, "kept", axis(0))])
    store.upsert_document("KB1", "other", [chunk("other", 0, "theirs", axis(1))])
    clash = Chunk("other#0", "doc", "clashing id", axis(2))  # another document's chunk id: refused mid-transaction
    with pytest.raises(InvalidRequest):
        store.upsert_document("KB1", "doc", [chunk("doc", 1, "new", axis(3)), clash])
    assert [h.text for h in store.search("KB1", Query(vector=axis(0), number_of_results=1))] == ["kept"]
    assert store.count("KB1") == 2


def test_delete(library: VectorStore) -> None:
    assert library.delete_document("KB1", "a") == 1
    assert library.delete_document("KB1", "a") == 0
    assert library.count("KB1") == 3
    assert "a" not in docs(library, search_type=SearchType.HYBRID, text="volcanoes lava")
    library.upsert_document("KB1", "b", [])  # an empty upsert deletes too
    assert library.count("KB1") == 2


def test_dimension_mismatch(store: VectorStore) -> None:
    with pytest.raises(DimensionMismatch) as err:
        store.upsert_document("KB1", "x", [Chunk("x#0", "x", "t", [1.0, 0.0])])
    assert "2 dimensions" in err.value.message and "8-dimensional" in err.value.message
    assert isinstance(err.value, InvalidRequest)  # the API layer answers ValidationException
    with pytest.raises(DimensionMismatch):
        store.search("KB1", Query(vector=[1.0] * (DIMS + 1)))
    with pytest.raises(DimensionMismatch):
        store.create_index("KB1", DIMS * 2)
    store.create_index("KB1", DIMS)  # the same dimensions again: nothing happens
    assert store.dimensions("KB1") == DIMS


def test_indexes_are_separate_and_can_be_dropped(store: VectorStore) -> None:
    store.create_index("KB2", 3)
    store.upsert_document("KB2", "x", [Chunk("x#0", "x", "t", [0.0, 1.0, 0.0])])
    store.upsert_document("KB1", "x", [Chunk("x#0", "x", "t", axis(0))])  # the same ids in another index
    assert store.count("KB2") == 1 and store.count("KB1") == 1
    store.drop_index("KB2")
    assert store.dimensions("KB2") is None
    with pytest.raises(IndexNotFound):
        store.count("KB2")
    with pytest.raises(IndexNotFound):
        store.search("NOPE", Query(vector=[1.0]))
    with pytest.raises(InvalidRequest):
        store.create_index("bad name!", 3)


def test_hierarchical_children_return_their_parent_once(store: VectorStore) -> None:
    parent = "PARENT: volcanoes and their lava, the whole section"
    kids = [Chunk(f"p#{i}", "p", f"child {i} about lava", axis(0, 1, i / 10), parent_id="p/0", parent_text=parent)
            for i in range(3)]  # fmt: skip
    store.upsert_document("KB1", "p", kids)
    store.upsert_document("KB1", "q", [chunk("q", 0, "glaciers", axis(1))])
    got = store.search("KB1", Query(vector=axis(0), number_of_results=2))
    assert [h.text for h in got] == [parent, "glaciers"]
    assert got[0].chunk_id == "p#0"


def test_concurrent_upserts_of_different_documents(store: VectorStore) -> None:
    errors: list[BaseException] = []

    def write(doc: str) -> None:
        try:
            for round_ in range(5):
                store.upsert_document("KB1", doc, [chunk(doc, i, f"{doc} round {round_} part {i}", axis(i % DIMS))
                                                   for i in range(20)])  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(d,)) for d in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count("KB1", "left") == 20 and store.count("KB1", "right") == 20
    assert docs(store, search_type=SearchType.KEYWORD, text="round", n=100) == {"left", "right"}
    assert all("round 4" in h.text for h in store.search("KB1", Query(vector=axis(0), number_of_results=50)))


def test_another_store_on_the_same_data_sees_every_write(store: VectorStore, reopen: Callable[[], VectorStore]) -> None:
    other = reopen()  # as another process would: its own connections (and, embedded, its own mirror)
    store.upsert_document("KB1", "a", [chunk("a", 0, "volcano lava", axis(0))])
    store.upsert_document("KB1", "b", [chunk("b", 0, "glacier ice", axis(1))])
    for search_type in SearchType:
        assert docs(other, search_type=search_type, text="lava ice") == {"a", "b"}
    store.upsert_document("KB1", "a", [chunk("a", 0, "volcano ash", axis(2)), chunk("a", 1, "magma", axis(3))])
    store.delete_document("KB1", "b")
    store.upsert_document("KB1", "c", [chunk("c", 0, "lava flows", axis(0))])
    for search_type in SearchType:
        assert docs(other, search_type=search_type, text="lava ice ash") == {"a", "c"}  # b's "ice" is gone
    got = other.search("KB1", Query(vector=axis(3), number_of_results=1))
    assert [(h.chunk_id, h.text) for h in got] == [("a#1", "magma")]
    other.upsert_document("KB1", "d", [chunk("d", 0, "glacier", axis(1))])  # and the other way round
    assert docs(store, search_type=SearchType.KEYWORD, text="glacier") == {"d"}


def test_vectors_are_normalized_so_scale_does_not_matter(store: VectorStore) -> None:
    store.upsert_document("KB1", "big", [chunk("big", 0, "t", list(np.array(axis(0)) * 1000.0))])
    store.upsert_document("KB1", "small", [chunk("small", 0, "t", axis(0, 1, 0.2))])
    got = store.search("KB1", Query(vector=[v * 0.001 for v in axis(0)], number_of_results=2))
    assert [h.document_id for h in got] == ["big", "small"]
    assert got[0].score == pytest.approx(1.0, abs=1e-5)


def test_fuse_is_reciprocal_rank_fusion() -> None:
    fused = dict(fuse([["x", "y"], ["y", "z"]]))
    assert fused["y"] == pytest.approx((1 / 62 + 1 / 61) / (2 / 61))
    assert fused["y"] > fused["x"] > fused["z"]
    assert fuse([["a"], ["a"]]) == [("a", 1.0)]
