"""BEIR SciFact (test split) for benchmarks/knowledge_quality.py: built from a public copy, kept out of git.

EVALUATION ONLY. Nothing here is committed: `ensure_scifact` writes BEIR's layout under a cache folder
(default ~/.cache/outcrop/ir/scifact):

    corpus.jsonl     {"_id", "title", "text"}: 5,183 abstracts
    queries.jsonl    {"_id", "text"}: the 300 test claims
    qrels/test.tsv   query-id, corpus-id, score: 339 judgments (all score 1)
    SOURCE.json      where it came from

Where it comes from. BEIR's own files (corpus.jsonl is 7.7 MB) are over the 4 MiB a fetched snapshot keeps, and
no compressed copy of them is in a public repository reachable here, so the set is rebuilt from SciFact's own
release (Wadden et al. 2020, github.com/allenai/scifact), which BEIR's SciFact is a reformatting of:

    github.com/sumithra-p-v/claimverifier, commit c89fe399bf3e91aa4502b10d673b07db27891526, data/scifact.zip
    (2.9 MB): Hugging Face's `allenai/scifact` exported to CSV: corpus_train.csv (doc_id, title, abstract as
    numpy's printout of the sentence list), claims_validation.csv (SciFact's dev claims, one row per
    evidence document, with cited_doc_ids). The repository states no licence of its own; the data's is
    SciFact's: claims and judgments CC BY 4.0, abstracts (from S2ORC) ODC-By 1.0 (allenai/scifact LICENSE.md).

BEIR's test split is SciFact's dev claims: the query is the claim, its relevant documents are its
cited_doc_ids, and a document's text is its abstract sentences joined by single spaces. Checked: the 339
(query, document) pairs come out the same, in the same order, as BEIR's qrels/test.tsv (a copy is in
github.com/moorateeahtashil/Information-Retrieval at 00b74e83, scifact/qrels/test.tsv: byte for byte once its
CRLF line ends are LF, which is what `QRELS_SHA256` pins), and
documents 4983 and 5836 equal, character for character, the BEIR corpus.jsonl lines quoted in public code.

The repository is read from a mirror folder (`<mirror>/sumithra-p-v+claimverifier/repo`, a bare git
directory or a working tree) or cloned (`git clone https://github.com/sumithra-p-v/claimverifier`, needs the
internet) into `<cache>/repos/`. Standard library only.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import re
import subprocess
import tokenize
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = "sumithra-p-v/claimverifier"
COMMIT = "c89fe399bf3e91aa4502b10d673b07db27891526"
ARCHIVE = "data/scifact.zip"
DEFAULT_MIRROR = Path("/work/.mirror")
DEFAULT_CACHE = Path.home() / ".cache" / "outcrop" / "ir"
QRELS_SHA256 = "68c0ac63f1c24b9e8ce497649694f09b2d0850bab7ec2b103cc66996f5f8b3a3"  # = BEIR's test.tsv, CRLF -> LF
COUNTS = {"corpus": 5183, "queries": 300, "qrels": 339}
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Dataset:
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]  # query id -> text (only queries with judgments)
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


# --- reading the archive ---------------------------------------------------------------------------


def archive_bytes(mirror: Path | None, cache: Path | None) -> tuple[bytes, str]:
    """data/scifact.zip at COMMIT (else HEAD), and where it was read."""
    folder = REPO.replace("/", "+")
    if mirror is not None:
        found = mirror / folder / "repo"
        if (found / "HEAD").is_file() and (found / "objects").is_dir():  # a bare git directory
            return _git_show(found, ARCHIVE), f"{found} (bare git)"
        if (found / ARCHIVE).is_file():
            return (found / ARCHIVE).read_bytes(), str(found)
    if cache is not None:
        tree = cache / "repos" / folder
        if not tree.is_dir():
            tree.parent.mkdir(parents=True, exist_ok=True)
            url = f"https://github.com/{REPO}"
            subprocess.run(["git", "clone", "--quiet", "--depth", "1", url, str(tree)], check=True)
        return (tree / ARCHIVE).read_bytes(), str(tree)
    raise FileNotFoundError(f"{REPO}: {ARCHIVE} is not under {mirror} ({folder}/repo); give a cache to clone into")


def _git_show(git_dir: Path, path: str) -> bytes:
    for rev in (COMMIT, "HEAD"):
        done = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{rev}:{path}"], capture_output=True)
        if done.returncode == 0:
            return done.stdout
    raise FileNotFoundError(f"{git_dir}: {path}: {done.stderr.decode(errors='replace').strip()}")


def sentences(printed: str) -> list[str]:
    """An abstract as numpy printed its array of sentences (`['One.'\\n 'Two.']`) -> the sentences: each element
    is a Python string literal, so the tokenizer finds them whatever quotes or escapes they needed."""
    tokens = tokenize.generate_tokens(io.StringIO(printed).readline)
    return [ast.literal_eval(t.string) for t in tokens if t.type == tokenize.STRING]


def _rows(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 30)
    text = archive.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def from_archive(data: bytes) -> Dataset:
    """BEIR SciFact's test split from the CSV export of SciFact (see the module docstring)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        documents = _rows(archive, "corpus_train.csv")
        claims = _rows(archive, "claims_validation.csv")
    corpus = {r["doc_id"]: (r["title"], " ".join(sentences(r["abstract"]))) for r in documents}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for row in claims:  # one row per (claim, evidence document): the claim and its citations repeat
        queries.setdefault(row["id"], row["claim"])
        for doc in _DIGITS.findall(row["cited_doc_ids"]):
            qrels.setdefault(row["id"], {}).setdefault(doc, 1)
    return Dataset(corpus, {q: t for q, t in queries.items() if q in qrels}, qrels)


# --- BEIR's layout on disk -------------------------------------------------------------------------


def qrels_tsv(qrels: dict[str, dict[str, int]]) -> str:
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{score}" for q, docs in qrels.items() for d, score in docs.items()]
    return "\n".join(lines) + "\n"


def write_beir(dataset: Dataset, folder: Path, source: dict[str, str]) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(folder / "corpus.jsonl", ({"_id": d, "title": t, "text": x} for d, (t, x) in dataset.corpus.items()))
    _write_jsonl(folder / "queries.jsonl", ({"_id": q, "text": t} for q, t in dataset.queries.items()))
    (folder / "qrels" / "test.tsv").write_text(qrels_tsv(dataset.qrels), encoding="utf-8")
    (folder / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def load_beir(folder: Path, split: str = "test") -> Dataset:
    """A BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): queries without judgments dropped."""
    corpus: dict[str, tuple[str, str]] = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            corpus[str(row["_id"])] = (row.get("title") or "", row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    rows = csv.reader(io.StringIO((folder / "qrels" / f"{split}.tsv").read_text(encoding="utf-8")), delimiter="\t")
    for row in rows:
        if len(row) < 3 or row[0] == "query-id":
            continue
        if int(row[2]) > 0:  # BEIR's evaluation counts only positive judgments as relevant
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries: dict[str, str] = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return Dataset(corpus, queries, {q: d for q, d in qrels.items() if q in queries})


def ensure_scifact(cache: Path = DEFAULT_CACHE, mirror: Path | None = DEFAULT_MIRROR) -> Path:
    """The BEIR SciFact folder under `cache`, built from the mirror (or a clone) on first use."""
    folder = cache / "scifact"
    if not (folder / "SOURCE.json").is_file():
        data, where = archive_bytes(mirror, cache)
        dataset = from_archive(data)
        got = {"corpus": len(dataset.corpus), "queries": len(dataset.queries),
               "qrels": sum(len(d) for d in dataset.qrels.values())}  # fmt: skip
        if got != COUNTS:
            raise ValueError(f"{REPO}:{ARCHIVE} gave {got}, not BEIR SciFact's {COUNTS}")
        digest = hashlib.sha256(qrels_tsv(dataset.qrels).encode()).hexdigest()
        if digest != QRELS_SHA256:
            raise ValueError(f"the judgments built from {REPO}:{ARCHIVE} are not BEIR's (sha256 {digest})")
        source = {"repository": f"https://github.com/{REPO}", "commit": COMMIT, "path": ARCHIVE, "read_from": where,
                  "archive_sha256": hashlib.sha256(data).hexdigest(),
                  "licence": "SciFact: claims CC BY 4.0, abstracts ODC-By 1.0 (S2ORC); evaluation only"}  # fmt: skip
        write_beir(dataset, folder, source)
    return folder
