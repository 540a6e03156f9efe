"""benchmarks/knowledge_quality.py's metrics and benchmarks/_ir_data.py's SciFact loader, on hand-computed cases
and a tiny fixture archive in a bare git repository built here (never the real mirror, which a clone lacks)."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ir = _load("_ir_data")
quality = _load("knowledge_quality")


# --- metrics ---------------------------------------------------------------------------------------


def test_ndcg_at_10_against_a_hand_computed_case() -> None:
    # relevant a, b, c; found a at rank 1 and b at rank 3: DCG = 1/log2(2) + 1/log2(4) = 1.5,
    # ideal DCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309..., nDCG = 0.70392...
    got = quality.ndcg(["a", "x", "b", "y"], {"a": 1, "b": 1, "c": 1})
    assert got == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert got == pytest.approx(0.703918, abs=1e-6)


def test_ndcg_cuts_at_k_and_uses_graded_gains() -> None:
    ranked = [f"x{i}" for i in range(10)] + ["a"]
    assert quality.ndcg(ranked, {"a": 1}) == 0.0  # rank 11 is past the cut
    assert quality.ndcg(["a"], {"a": 1}) == 1.0
    # graded: b (2) at rank 1, a (1) at rank 2 is the ideal order; swapped it is (1 + 2/log2 3) / (2 + 1/log2 3)
    assert quality.ndcg(["b", "a"], {"a": 1, "b": 2}) == pytest.approx(1.0)
    assert quality.ndcg(["a", "b"], {"a": 1, "b": 2}) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert quality.ndcg([], {"a": 1}) == 0.0


def test_recall_and_means_count_unanswered_queries_as_zero() -> None:
    assert quality.recall(["a", "x", "b"], {"a": 1, "b": 1, "c": 1, "d": 1}) == 0.5
    assert quality.recall(["x", "a"], {"a": 1}, k=1) == 0.0
    n10, r100 = quality.mean_metrics({"q1": ["a"]}, {"q1": {"a": 1}, "q2": {"b": 1}})
    assert (n10, r100) == (0.5, 0.5)


def test_documents_rank_by_their_best_chunk() -> None:
    from outcrop.knowledge.vectors import Hit

    hits = [Hit(c, d, "", s, {}, None) for c, d, s in [("b#1", "b", 0.9), ("a#0", "a", 0.8), ("b#0", "b", 0.7)]]
    assert quality.documents(hits) == ["b", "a"]


# --- the SciFact loader on a fixture -----------------------------------------------------------------

CORPUS = [  # doc_id, title, abstract as numpy prints an array of sentences (one per line, quotes as repr makes them)
    ("11", "First title.", "['One sentence.'\n 'It\\'s \"quoted\" twice.']"),
    ("22", "Second title.", "[\"Don't stop.\" 'Greek \\u03b2 and 1.4 +/-'\n '0.2 units.']"),
    ("33", "Third.", "['Only one.']"),
]
CLAIMS = [  # one row per (claim, evidence document), as the Hugging Face export has them
    {"id": "1", "claim": "A claim.", "evidence_doc_id": "", "cited_doc_ids": "[11]"},
    {"id": "3", "claim": "Another claim.", "evidence_doc_id": "22", "cited_doc_ids": "[22 33]"},
    {"id": "3", "claim": "Another claim.", "evidence_doc_id": "33", "cited_doc_ids": "[22 33]"},
]


def _archive() -> bytes:
    def csv_text(header: list[str], rows: list[dict[str, str]]) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, header)
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    corpus = [{"doc_id": d, "title": t, "abstract": a, "structured": "False"} for d, t, a in CORPUS]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("corpus_train.csv", csv_text(["doc_id", "title", "abstract", "structured"], corpus))
        z.writestr("claims_validation.csv", csv_text(["id", "claim", "evidence_doc_id", "cited_doc_ids"], CLAIMS))
    return buffer.getvalue()


def test_sentences_read_numpys_printout() -> None:
    assert ir.sentences("['A.'\n 'B\\'s \"c\".']") == ["A.", 'B\'s "c".']
    assert ir.sentences("[]") == []


def test_from_archive_rebuilds_beir_layout(tmp_path: Path) -> None:
    data = ir.from_archive(_archive())
    assert data.corpus["11"] == ("First title.", 'One sentence. It\'s "quoted" twice.')
    assert data.corpus["22"] == ("Second title.", "Don't stop. Greek \u03b2 and 1.4 +/- 0.2 units.")
    assert data.queries == {"1": "A claim.", "3": "Another claim."}
    assert data.qrels == {"1": {"11": 1}, "3": {"22": 1, "33": 1}}
    assert ir.qrels_tsv(data.qrels) == "query-id\tcorpus-id\tscore\n1\t11\t1\n3\t22\t1\n3\t33\t1\n"

    ir.write_beir(data, tmp_path / "set", {"repository": "fixture"})
    assert ir.load_beir(tmp_path / "set") == data


def test_load_beir_drops_unjudged_queries_and_zero_scores(tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "x"}\n{"_id": "d2", "text": "y"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "one"}\n{"_id": "q2", "text": "two"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\n")
    data = ir.load_beir(folder)
    assert data.corpus == {"d1": ("T", "x"), "d2": ("", "y")}
    assert data.queries == {"q1": "one"}
    assert data.qrels == {"q1": {"d1": 1}}


def _bare_mirror(tmp_path: Path, archive: bytes) -> Path:
    """<mirror>/sumithra-p-v+claimverifier/repo: a bare repository whose HEAD holds data/scifact.zip."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "scifact.zip").write_bytes(archive)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "fixture"], check=True)
    mirror = tmp_path / "mirror"
    bare = mirror / "sumithra-p-v+claimverifier" / "repo"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return mirror


def test_archive_is_read_from_a_bare_mirror_at_head(tmp_path: Path) -> None:
    archive = _archive()
    data, where = ir.archive_bytes(_bare_mirror(tmp_path, archive), None)
    assert data == archive  # the fixture's commit is not COMMIT, so HEAD is read
    assert "bare git" in where
    with pytest.raises(FileNotFoundError, match="cache"):
        ir.archive_bytes(tmp_path / "empty", None)


def test_ensure_scifact_refuses_a_set_that_is_not_beirs(tmp_path: Path) -> None:
    mirror = _bare_mirror(tmp_path, _archive())
    with pytest.raises(ValueError, match="not BEIR SciFact"):
        ir.ensure_scifact(tmp_path / "cache", mirror)
    assert not (tmp_path / "cache" / "scifact" / "SOURCE.json").exists()
