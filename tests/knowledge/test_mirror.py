"""The embedded store's in-memory mirror: the same results as searching the file, through writes, deletes, compaction,
segment merging, a pruned change log, another process's writes, concurrent readers and an old file without a log."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlean

from outcrop.knowledge.vectors import Chunk, Query, SearchType, parse_filter
from outcrop.knowledge.vectors import mirror as mirror_module
from outcrop.knowledge.vectors.sqlite_store import SqliteVectorStore

DIMS = 16
WORDS = [f"word{i}" for i in range(40)] + ["running", "runs", "ran", "café", "cafe"]


def _document(rng: random.Random, doc: str, round_: int, size: int) -> list[Chunk]:
    out = []
    for i in range(size):
        # lengths differ chunk to chunk (BM25 ties, which FTS5 and numpy may order differently, are then unlikely)
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 60))]
        vector = [rng.gauss(0, 1) for _ in range(DIMS)]
        out.append(Chunk(f"{doc}#{i}", doc, " ".join(words), vector, {"round": round_, "doc": doc, "i": i}))
    return out


def _queries(rng: random.Random) -> list[Query]:
    out = []
    for search_type in SearchType:
        for raw in (None, {"greaterThan": {"key": "i", "value": 1}}, {"equals": {"key": "doc", "value": "d3"}}):
            text = " ".join(rng.choice(WORDS) for _ in range(3))
            vector = [rng.gauss(0, 1) for _ in range(DIMS)]
            out.append(Query(text, vector, search_type, rng.choice([1, 5, 20]),
                             None if raw is None else parse_filter(raw)))  # fmt: skip
    return out


def _same(memory: SqliteVectorStore, file: SqliteVectorStore, rng: random.Random) -> None:
    for q in _queries(rng):
        got, want = memory.search("KB", q), file.search("KB", q)
        assert [(h.chunk_id, h.text) for h in got] == [(h.chunk_id, h.text) for h in want], q
        # HYBRID scales BM25 scores, computed in float64 by the mirror and in FTS5's own arithmetic
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4), q


def _replica(folder: Path, documents: dict[str, list[Chunk]]) -> SqliteVectorStore:
    """A new file holding just these documents, searched without a mirror. After deletes FTS5's bm25() on a
    contentless table still counts the removed rows in its row count and average length (it cannot know their
    sizes), the mirror does not: its scores are what FTS5 gives a file written afresh."""
    replica = SqliteVectorStore(folder, memory=False)
    replica.drop_index("KB")
    replica.create_index("KB", DIMS)
    for doc, chunks in documents.items():
        replica.upsert_document("KB", doc, chunks)
    return replica


@pytest.fixture
def stores(tmp_path: Path) -> Any:
    memory, file = SqliteVectorStore(tmp_path / "kb"), SqliteVectorStore(tmp_path / "kb", memory=False)
    memory.create_index("KB", DIMS)
    yield memory, file
    memory.close()
    file.close()


def test_the_mirror_answers_as_the_file_through_writes_compaction_and_merging(
    stores: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mirror_module, "MIN_COMPACT", 8)
    monkeypatch.setattr(mirror_module, "MAX_SEGMENTS", 2)
    memory, file = stores
    rng = random.Random(7)
    documents: dict[str, list[Chunk]] = {}
    for d in range(12):
        documents[f"d{d}"] = _document(rng, f"d{d}", 0, rng.randint(1, 6))
        memory.upsert_document("KB", f"d{d}", documents[f"d{d}"])
    _same(memory, file, rng)  # the mirror read whole
    compactions = 0
    for round_ in range(1, 40):
        doc = f"d{rng.randrange(14)}"
        if rng.random() < 0.2:
            memory.delete_document("KB", doc)
            documents.pop(doc, None)
        else:
            documents[doc] = _document(rng, doc, round_, rng.randint(0, 6))
            memory.upsert_document("KB", doc, documents[doc])
        if round_ % 3 == 0:
            removed = memory._mirrors["KB"]._removed
            replica = _replica(tmp_path / "replica", {d: c for d, c in documents.items() if c})
            _same(memory, replica, rng)  # caught up from the log
            replica.close()
            compactions += memory._mirrors["KB"]._removed < removed
    assert compactions and memory._mirrors["KB"].reloads == 1  # never read whole again


def test_a_mirror_behind_the_kept_log_reads_the_file_again(
    stores: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mirror_module, "LOG_KEEP", 3)
    memory, file = stores
    rng = random.Random(3)
    documents = {"d0": _document(rng, "d0", 0, 4)}
    memory.upsert_document("KB", "d0", documents["d0"])
    _same(memory, file, rng)
    writer = SqliteVectorStore(memory.root)
    for round_ in range(5):
        doc = f"d{round_ % 3}"
        documents[doc] = _document(rng, doc, round_, 3)
        writer.upsert_document("KB", doc, documents[doc])
    writer.close()
    _same(memory, _replica(tmp_path / "replica", documents), rng)
    assert memory._mirrors["KB"].reloads == 2


def test_another_process_writes_are_seen(stores: Any) -> None:
    memory, file = stores
    rng = random.Random(5)
    memory.upsert_document("KB", "mine", _document(rng, "mine", 0, 3))
    assert memory.search("KB", Query("word1", [1.0] * DIMS, SearchType.HYBRID, 10))  # the mirror is read
    script = (
        "import sys; from outcrop.knowledge.vectors import Chunk, open_store\n"
        "s = open_store(sys.argv[1])\n"
        f"s.upsert_document('KB', 'theirs', [Chunk('theirs#0', 'theirs', 'zeppelin', [1.0] * {DIMS})])\n"
        "s.delete_document('KB', 'mine')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(memory.root)], check=True, timeout=120)
    for search_type in SearchType:
        got = memory.search("KB", Query("zeppelin word1", [1.0] * DIMS, search_type, 10))
        assert {h.document_id for h in got} == {"theirs"}
    _same(memory, file, rng)


def test_readers_see_a_document_whole_while_it_is_rewritten(stores: Any) -> None:
    memory, _ = stores
    rng = random.Random(11)
    for d in range(5):
        memory.upsert_document("KB", f"other{d}", _document(rng, f"other{d}", 0, 4))
    memory.upsert_document("KB", "w", [Chunk(f"w#{i}", "w", f"round 0 part {i}", [1.0] * DIMS) for i in range(10)])
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            for r in range(1, 40):
                memory.upsert_document("KB", "w", [Chunk(f"w#{i}", "w", f"round {r} part {i}", [1.0 + i / 100] * DIMS)
                                                   for i in range(10)])  # fmt: skip
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def read(search_type: SearchType) -> None:
        try:
            while not stop.is_set():
                got = memory.search("KB", Query("round part", [1.0] * DIMS, search_type, 30))
                rounds = {h.text.split()[1] for h in got if h.document_id == "w"}
                assert len(rounds) == 1 and len([h for h in got if h.document_id == "w"]) == 10, got
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(t,)) for t in SearchType]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_file_made_before_the_change_log_gets_one(tmp_path: Path) -> None:
    old = SqliteVectorStore(tmp_path)
    old.create_index("KB", DIMS)
    old.upsert_document("KB", "a", [Chunk("a#0", "a", "lava", [1.0] * DIMS)])
    old.close()
    db = sqlean.connect(str(tmp_path / "KB.sqlite"))
    db.execute("DROP TABLE changes")
    db.commit()
    db.close()
    store = SqliteVectorStore(tmp_path)
    assert [h.document_id for h in store.search("KB", Query("lava", [1.0] * DIMS, SearchType.HYBRID))] == ["a"]
    store.upsert_document("KB", "b", [Chunk("b#0", "b", "lava", list(np.eye(DIMS)[0]))])
    assert {h.document_id for h in store.search("KB", Query("lava", [1.0] * DIMS, SearchType.HYBRID))} == {"a", "b"}
    assert store._mirrors["KB"].reloads == 1
    store.close()


def test_keyword_scores_are_fts5_bm25(stores: Any) -> None:
    memory, _ = stores
    rng = random.Random(2)
    for d in range(30):
        memory.upsert_document("KB", f"d{d}", _document(rng, f"d{d}", 0, 3))
    memory.search("KB", Query("x", search_type=SearchType.KEYWORD))
    db = sqlean.connect(str(memory.root / "KB.sqlite"))
    engine = memory._engine("KB")
    with engine.connect() as conn, conn.begin():
        view = memory._mirrors["KB"].view(conn, False, True)
        assert view is not None
        for words in (["running"], ["word1", "cafe"], ["word2", "word3", "ran"]):
            want = db.execute("SELECT rowid, -bm25(keywords) FROM keywords WHERE keywords MATCH ? ORDER BY rowid",
                              (" OR ".join(words),)).fetchall()  # fmt: skip
            got = sorted(view.bm25(mirror_module.query_terms(conn, " ".join(words)), 1000, None))
            assert [r for r, _ in got] == [r for r, _ in want]
            assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-9)
    db.close()
