"""Train the content-filter classifier (outcrop/guardrails/content.py) on the examples the project wrote
and, with --public, on public labelled data (scripts/guardrail_data.py; sources and licences in
outcrop/guardrails/data/DATA.md).

Public data (--public)
    The rows scripts/guardrail_data.py writes (already deduplicated against every evaluation set at
    cosine 0.9) join the project's lines; a row the project already has under another class is
    dropped (the project's label wins). They are spread over the held-out folds like the harmful lines.
    A text of several windows (a jailbreak prompt, an e-mail, a long comment) is trained on as the
    runtime scores it as a whole (content.with_whole: the normalized mean of its windows), and its
    windows are examples of its class too -- except a prompt attack's, whose sentences are mostly
    harmless one by one. Every vector is the runtime's (outcrop/guardrails/encoder.py: ONNX Runtime
    int8 by default), so the classifier reads at run time what it was trained on.

Data
    outcrop/guardrails/data/train/*.txt, one example a line (blank lines and lines starting with "#"
    skipped). The file name gives the class: hate, insults, sexual, violence, self_harm, misconduct,
    prompt_attack; benign*.txt (benign_a, benign_b, benign_c, ...) are BENIGN; extra_<class>.txt adds
    examples to <class> (extra_benign.txt: long, messy benign posts that look harmful, hard negatives).
    SELF_HARM is a class of its own (it reads differently from violence against others) that the
    runtime reports under VIOLENCE, as Bedrock has no self-harm filter. Exact
    duplicates (case and spacing ignored) are kept once; a text found under two classes is dropped.
    No evaluation data is read here: thresholds and hyperparameters come from our own examples only.
    The over-refusal benchmark's prompts are read for one check only: no training line may be within
    cosine TOO_CLOSE (0.8) of one of them (the script stops if one is).

Model
    Each line is embedded with all-MiniLM-L6-v2 (L2-normalized, 384 dimensions, as the runtime does),
    standardized, and fed to a small network: one hidden layer of HIDDEN (256) ReLU units, dropout
    DROPOUT (0.5) in training, and a softmax over the 8 classes, trained with AdamW (learning rate
    1e-3, batches of 256, EPOCHS (5) epochs) on a class-weighted cross-entropy. The seven harmful
    classes weigh the same in total, and BENIGN weighs BENIGN_WEIGHT (1) times all of them together, so
    the model's prior is an even split between benign and harmful rather than 7 to 1 for harmful. The
    standardization is folded into the saved hidden layer: the runtime computes
    `relu(x @ H.T + c) @ W.T + b` on the raw embedding, and scores categories as
    content.ContentClassifier describes. (Until November 2026 this was a logistic regression on the
    embedding; the hidden layer raised held-out recall at MEDIUM from 42 % to 51 % of harmful lines,
    67 % to 79 % of paragraphs, at the same benign budget.)

    Besides the lines, the model trains on the windows (content.windows) of "documents" assembled from
    our lines: 2-8 benign lines joined (BENIGN), and a harmful line with 1-3 more lines of its class
    (that class), so that it also sees texts of several sentences, as the runtime reads them.

Held-out split
    One fold per benign file (benign_a, benign_b, benign_c: written by different people), the harmful
    lines spread over the same number of folds, stratified by class, with a fixed seed. Each fold is
    scored by a model trained on the other folds (their lines and their documents), so every benign
    example is judged by a model that never saw a line of its author's file. A random split scores
    benign texts as if the model knew the style of every benign text it will meet: with thresholds
    set on a random 5-fold split, 2.7 % of held-out benign texts reached MEDIUM, but 10 % of
    benign_a's and of benign_b's texts did when the model was trained without that file.
    extra_benign.txt is not an author fold but spread over the folds like the harmful lines: it holds
    the hard cases (war reporting, thrillers, frank health talk, casual profanity) that the shipped
    model is trained on; held out as a fold of its own, every held-out model would meet them unseen
    and the thresholds would be set as if the shipped model had never seen such texts either
    (VIOLENCE's MEDIUM threshold rose to 0.994, and a plain threat inside a paragraph fell to LOW).
    The held-out texts of a fold are built from its own lines only: every line as it is; as many benign
    documents (2-8 benign lines) as benign lines; for each harmful line a paragraph (1-3 more lines of
    its class) and the line embedded among 1-5 benign lines. They are scored through windows() and the
    runtime's ContentClassifier, exactly as the runtime scores a text.

Choices made on the held-out split (never on an evaluation set)
    * Weight decay: the one of DECAY_GRID with the lowest held-out class-weighted log-loss on the lines
      (HIDDEN, DROPOUT and EPOCHS were chosen the same way, among 3-30 epochs and dropout 0.2-0.5).
    * BENIGN_WEIGHT: 1, among 1/7 (every class equal), 1, 3 and 10, for the best held-out recall of
      harmful lines averaged over the three strengths (1 and 3 were within 0.2 points; all four within
      1 point at MEDIUM).
    * Thresholds, per confidence band, on the held-out benign texts (lines and documents together):
      the five content filters (HATE, INSULTS, SEXUAL, VIOLENCE, MISCONDUCT) get their thresholds at
      one common share q of their benign scores, q the largest at which at most LOW_BENIGN (8 %),
      MEDIUM_BENIGN (2 %) or HIGH_BENIGN (0.5 %) of the benign texts reach any of the five: the budget
      is for what a guardrail with all five at one strength refuses, not per filter. The budget counts
      every benign source alike (each project file, each public set, the built documents: weights
      1 / the source's size), so that thousands of easy negatives (grade-school maths, instructions)
      cannot loosen the thresholds that the hard ones (edgy posts, neutral statements about groups)
      must hold; the per-source table shows what each refuses. PROMPT_ATTACK
      gets the same budgets on its own. A band's threshold is never below LOW_FLOOR (0.3),
      MEDIUM_FLOOR (0.5) or HIGH_FLOOR (0.7), nor below the band under it. HIGH is then raised, if
      needed, to the lowest threshold at which the held-out precision (texts of the category among all
      held-out texts reaching it) is at least HIGH_PRECISION (0.95).
    * Windows (content.MIN_WORDS): 16 words, among 8 and 16 (and other layouts), on the same kind of
      held-out documents (then with a random 5-fold split): equal average recall over lines,
      paragraphs and embedded lines at the same benign budget, with 40 % fewer windows than 8.

    The tables show, per category, the thresholds, the recall of the category's held-out lines, the
    precision and the share of benign held-out texts reaching each band; then, for the five content
    filters together at each strength, the share of each kind of held-out text blocked.

    Finally the model is refitted on all lines and documents with the chosen weight decay, and written with
    the held-out thresholds to outcrop/guardrails/data/content_classifier.npz (~370 KB).

Run it (5-10 minutes on 2 CPU cores, most of it embedding; a minute with a warm --cache)::

    python scripts/train_guardrail_classifier.py
    python scripts/train_guardrail_classifier.py --cache /tmp/guardrail-embeddings.npz   # reuse embeddings
    python scripts/train_guardrail_classifier.py --out /tmp/c.npz --benign-weight 3 --no-augment
    python scripts/train_guardrail_classifier.py --static   # the CLASSIC tier's classifier, on static vectors

Deterministic on one machine: fixed seeds for the folds, the documents, the initial weights and the batches.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from outcrop.guardrails.content import (  # noqa: E402
    BENIGN,
    CATEGORIES,
    REPORTED_AS,
    WINDOW_WORDS,
    ContentClassifier,
    windows,
    with_whole,
)

TRAIN_DIR = ROOT / "outcrop" / "guardrails" / "data" / "train"
OVER_REFUSAL = ROOT / "benchmarks" / "data" / "over_refusal.txt"
TOO_CLOSE = 0.8  # an over-refusal prompt this similar to a training line would not measure anything
OUT = ROOT / "outcrop" / "guardrails" / "data" / "content_classifier.npz"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
CLASSES = ("HATE", "INSULTS", "SEXUAL", "VIOLENCE", "SELF_HARM", "MISCONDUCT", "PROMPT_ATTACK", BENIGN)
CONTENT = ("HATE", "INSULTS", "SEXUAL", "VIOLENCE", "MISCONDUCT")  # the filters the benchmark turns on
SEED = 0
BENIGN_WEIGHT = 1.0  # BENIGN weighs as much as all harmful classes together (chosen on held-out, see above)
DECAY_GRID = (0.1, 0.3, 1.0, 3.0)
HIDDEN, DROPOUT, EPOCHS, BATCH, LEARNING_RATE = 256, 0.5, 5, 256, 1e-3
LOW_BENIGN, MEDIUM_BENIGN, HIGH_BENIGN = 0.08, 0.02, 0.005
HIGH_PRECISION = 0.95
LOW_FLOOR, MEDIUM_FLOOR, HIGH_FLOOR = 0.3, 0.5, 0.7
MAX_DOCUMENTS = 800  # per fold: benign documents, and harmful lines given a paragraph and an embedding


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --- data --------------------------------------------------------------------------------------


def class_of(path: Path) -> str | None:
    stem = path.stem.lower()
    if stem.startswith("benign"):
        return BENIGN
    stem = stem.removeprefix("extra_")
    return stem.upper() if stem.upper() in CLASSES else None


def read_examples(folder: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """(texts, class indices, source file stems), deduplicated; a text under two classes is dropped."""
    seen: dict[str, tuple[str, int, str]] = {}
    conflicts: set[str] = set()
    for path in sorted(folder.glob("*.txt")):
        label = class_of(path)
        if label is None:
            log(f"skipping {path.name}: no class of that name")
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            key = " ".join(text.lower().split())
            index = CLASSES.index(label)
            if key in seen and seen[key][1] != index:
                conflicts.add(key)
            seen.setdefault(key, (text, index, path.stem))
    kept = [v for k, v in seen.items() if k not in conflicts]
    if conflicts:
        log(f"dropped {len(conflicts)} texts found under two classes")
    return [t for t, _, _ in kept], np.array([i for _, i, _ in kept], dtype=np.int64), [s for _, _, s in kept]


def read_public(path: Path) -> tuple[list[str], list[str], list[str]]:
    """The public training set scripts/guardrail_data.py writes: (texts, class names, sources)."""
    import json

    texts, labels, sources = [], [], []
    with path.open(encoding="utf-8") as f:  # not splitlines(): texts may hold U+2028
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if row["label"] in CLASSES:
            texts.append(str(row["text"]))
            labels.append(str(row["label"]))
            sources.append("public:" + str(row["source"]))
    return texts, labels, sources


def merge(
    texts: list[str], y: np.ndarray, sources: list[str], public: tuple[list[str], list[str], list[str]]
) -> tuple[list[str], np.ndarray, list[str]]:
    """The project's lines and the public rows, a text under two classes dropped, duplicates kept once."""
    seen = {" ".join(t.lower().split()): int(c) for t, c in zip(texts, y, strict=True)}
    out_t, out_y, out_s = list(texts), [int(c) for c in y], list(sources)
    clash = 0
    for text, label, source in zip(*public, strict=True):
        key = " ".join(text.lower().split())
        c = CLASSES.index(label)
        if key in seen:
            clash += seen[key] != c
            continue
        seen[key] = c
        out_t.append(text)
        out_y.append(c)
        out_s.append(source)
    if clash:
        log(f"public rows already among the project's lines under another class: {clash} (the project's kept)")
    return out_t, np.array(out_y, dtype=np.int64), out_s


def line_vectors(
    texts: list[str], y: np.ndarray, embed: Embedder | StaticTextEmbedder
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each text's training vector and the windows of long texts as extra examples.

    A text of one window is that window's vector. A longer one (public rows: jailbreak prompts,
    e-mails, long comments) is its whole-text vector as the runtime computes it (content.with_whole:
    the normalized mean of its windows), and its windows are extra examples of its class -- except a
    prompt attack's, whose sentences are mostly harmless one by one. Returns (vectors, extra vectors,
    index of the text each extra vector comes from)."""
    pieces = [windows(t) for t in texts]
    flat = embed([w for p in pieces for w in p])
    x = np.zeros((len(texts), flat.shape[1]), dtype=np.float32)
    extra, owner = [], []
    attack = CLASSES.index("PROMPT_ATTACK")
    at = 0
    for i, p in enumerate(pieces):
        v = flat[at : at + len(p)]
        at += len(p)
        x[i] = with_whole(v)[-1]
        if len(p) > 1 and y[i] != attack:
            extra.append(v)
            owner.extend([i] * len(p))
    extra_x = np.concatenate(extra) if extra else np.zeros((0, flat.shape[1]), np.float32)
    return x, extra_x, np.array(owner, dtype=np.int64)


class Embedder:
    """The runtime's guardrail vectors (outcrop/guardrails/encoder.py: ONNX Runtime int8 MiniLM by default,
    OUTCROP_GUARDRAIL_ENCODER picks another backend), so the classifier is trained on what it will read;
    memoized by backend and text, optionally persisted to a cache file between runs."""

    def __init__(self, cache: Path | None) -> None:
        from outcrop.guardrails.encoder import GuardrailEncoder

        self.encoder = GuardrailEncoder(threads=2)
        self.encoder.load()
        self.cache_path = cache
        self.memo: dict[str, np.ndarray] = {}
        if cache is not None and cache.exists():
            with np.load(cache, allow_pickle=False) as data:
                self.memo = dict(zip((str(k) for k in data["keys"]), data["vectors"], strict=True))

    def _key(self, text: str) -> str:
        return hashlib.sha1(f"{self.encoder.backend}\0{text}".encode()).hexdigest()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if self._key(t) not in self.memo})
        for start in range(0, len(missing), 512):
            batch = missing[start : start + 512]
            for text, vector in zip(batch, self.encoder.encode(batch), strict=True):
                self.memo[self._key(text)] = np.asarray(vector, dtype=np.float32)
        return np.stack([self.memo[self._key(t)] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        if self.cache_path is not None:
            keys = sorted(self.memo)
            np.savez(self.cache_path, keys=np.array(keys), vectors=np.stack([self.memo[k] for k in keys]))


class StaticTextEmbedder:
    """The CLASSIC tier's vectors (outcrop/guardrails/static.py): no cache needed, they are a table lookup."""

    def __init__(self) -> None:
        from outcrop.guardrails.static import StaticEmbedder

        self.static = StaticEmbedder.load()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.static.embed(list(texts)) if texts else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        pass


def check_over_refusal_apart(x: np.ndarray, texts: list[str], embed: Embedder | StaticTextEmbedder) -> None:
    """The over-refusal benchmark's prompts must stay unlike every training line (cosine < TOO_CLOSE),
    or that benchmark would measure memory. The set is read for this check only, never trained on."""
    if not OVER_REFUSAL.exists():
        return
    safe = [s.strip() for s in OVER_REFUSAL.read_text(encoding="utf-8").splitlines() if s.strip()]
    similarity = embed(safe) @ x.T
    nearest = similarity.max(axis=1)
    close = np.flatnonzero(nearest >= TOO_CLOSE)
    log(f"over-refusal prompts vs training lines: highest cosine {nearest.max():.3f} (limit {TOO_CLOSE})")
    if len(close):
        for i in close:
            log(f"  too close: {safe[i]!r} ~ {texts[int(similarity[i].argmax())]!r}")
        raise SystemExit("training lines too close to the over-refusal benchmark: reword or drop them")


# --- model -------------------------------------------------------------------------------------


@dataclass
class Model:
    hidden_weights: np.ndarray  # (HIDDEN, 384), standardization folded in
    hidden_bias: np.ndarray
    weights: np.ndarray  # (classes, HIDDEN)
    bias: np.ndarray

    def runtime(self) -> ContentClassifier:
        """The model as the runtime runs it (no thresholds yet)."""
        return ContentClassifier(self.weights, self.bias, CLASSES, np.zeros((len(CATEGORIES), 3)), EMBEDDING_MODEL,
                                 (self.hidden_weights, self.hidden_bias))  # fmt: skip


def class_weights(y: np.ndarray, benign_weight: float = BENIGN_WEIGHT) -> np.ndarray:
    """Per-class sample weights: the harmful classes weigh the same in total, BENIGN weighs
    `benign_weight` times all of them together; the mean sample weight is 1."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    benign = CLASSES.index(BENIGN)
    harmful = [i for i in range(len(CLASSES)) if i != benign and counts[i] > 0]
    total = np.zeros(len(CLASSES))
    total[harmful] = 1.0 / len(harmful)
    total[benign] = benign_weight
    return np.where(counts > 0, total / total.sum() * len(y) / np.maximum(counts, 1), 0.0)


def fit(x: np.ndarray, y: np.ndarray, decay: float, benign_weight: float = BENIGN_WEIGHT) -> Model:
    """The network (module docstring) on standardized features, AdamW with weight decay `decay`."""
    import torch

    torch.manual_seed(SEED)
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-6
    xs = torch.tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y)
    sample_weight = torch.tensor(class_weights(y, benign_weight)[y], dtype=torch.float32)
    hidden, out = torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.Linear(HIDDEN, len(CLASSES))
    net = torch.nn.Sequential(hidden, torch.nn.ReLU(), torch.nn.Dropout(DROPOUT), out)
    opt = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=decay)
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(y))
        for start in range(0, len(y), BATCH):
            batch = order[start : start + BATCH]
            losses = torch.nn.functional.cross_entropy(net(xs[batch]), yt[batch], reduction="none")
            loss = (losses * sample_weight[batch]).mean()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    w1 = hidden.weight.detach().double().numpy() / std  # x_std @ H.T == x @ (H / std).T - (H / std) @ mean
    b1 = hidden.bias.detach().double().numpy() - w1 @ mean
    w2, b2 = out.weight.detach().numpy(), out.bias.detach().numpy()
    return Model(w1.astype(np.float32), b1.astype(np.float32), w2.astype(np.float32), b2.astype(np.float32))


def weighted_log_loss(p: np.ndarray, y: np.ndarray, benign_weight: float) -> float:
    weight = class_weights(y, benign_weight)[y]
    return float((weight * -np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))).sum() / weight.sum())


def _author(source: str) -> bool:
    """Whether a benign example comes from one author's file (benign_a.txt, ...): a fold of its own."""
    return source.startswith("benign")


def folds(y: np.ndarray, sources: list[str], seed: int) -> np.ndarray:
    """A fold number per example: one fold per benign source file, so that every benign example is
    scored by a model that never saw a line of its author's file; the harmful examples spread over
    the same number of folds, stratified by class. Reproducible."""
    benign_sources = sorted({s for s, c in zip(sources, y, strict=True) if c == CLASSES.index(BENIGN) and _author(s)})
    if len(benign_sources) < 2:
        raise SystemExit("the held-out split needs at least two benign files (benign_a.txt, benign_b.txt, ...)")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        spread = members
        if c == CLASSES.index(BENIGN):  # author files: a fold each; extra_benign.txt: spread like the harmful lines
            spread = np.array([i for i in members if not _author(sources[i])], dtype=np.int64)
            for i in members:
                if _author(sources[i]):
                    fold[i] = benign_sources.index(sources[i])
        fold[rng.permutation(spread)] = np.arange(len(spread)) % len(benign_sources)
    return fold


def category_fold() -> np.ndarray:
    """(classes, categories) 0/1: which classes count towards which category (as content.py does)."""
    m = np.zeros((len(CLASSES), len(CATEGORIES)))
    for i, name in enumerate(CLASSES):
        category = REPORTED_AS.get(name, name)
        if category in CATEGORIES:
            m[i, CATEGORIES.index(category)] = 1.0
    return m


def category_of(y: np.ndarray) -> np.ndarray:
    """The category index of each example (-1 for benign)."""
    m = category_fold()
    return np.where(m[y].sum(axis=1) > 0, m[y].argmax(axis=1), -1)


# --- held-out texts ----------------------------------------------------------------------------


@dataclass
class HeldOut:
    """Held-out texts built from one fold's held-out lines only, and their category scores."""

    texts: list[str]
    kinds: list[str]  # "line", "benign document", "paragraph", "embedded"
    label: np.ndarray  # class index (BENIGN for benign documents, the class of an embedded line)
    category: np.ndarray  # category index, -1 for benign
    fold: np.ndarray
    groups: list[str] = field(default_factory=list)  # a line's source file or set; "documents" for built ones
    vectors: np.ndarray | None = None  # the embeddings of all texts' windows, text after text
    owner: np.ndarray | None = None  # the text each row of `vectors` belongs to
    scores: np.ndarray | None = None  # (texts, categories), from content.ContentClassifier

    def embed(self, embed: Embedder | StaticTextEmbedder) -> None:
        pieces = [windows(t) for t in self.texts]
        self.vectors = embed([w for p in pieces for w in p])
        self.owner = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])

    def augmentation(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vectors, classes, folds): the windows of benign documents and harmful paragraphs, as extra
        training examples (embedded lines are left out: most of their windows are benign)."""
        assert self.vectors is not None and self.owner is not None
        kinds = np.array(self.kinds)[self.owner]
        keep = (kinds == "benign document") | (kinds == "paragraph")
        return self.vectors[keep], self.label[self.owner][keep], self.fold[self.owner][keep]


KINDS = ("line", "benign document", "paragraph", "embedded")


def held_out_texts(texts: list[str], y: np.ndarray, fold: np.ndarray, sources: list[str] | None = None) -> HeldOut:
    """Every held-out line as it is; as many benign documents (2-8 benign lines) as benign lines; for
    each harmful line a paragraph (with 1-3 more lines of its class) and the line embedded among 1-5
    benign lines. All drawn from the same fold's held-out lines."""
    rng = random.Random(SEED)
    cat = category_of(y)
    out = HeldOut([], [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    labels: list[int] = []
    folds_: list[int] = []
    benign_class = CLASSES.index(BENIGN)

    def add(text: str, kind: str, label: int, k: int, group: str = "documents") -> None:
        out.groups.append(group)
        out.texts.append(text)
        out.kinds.append(kind)
        labels.append(label)
        folds_.append(k)

    for k in range(int(fold.max()) + 1):
        held = np.flatnonzero(fold == k)
        short = [i for i in held if len(texts[i].split()) <= WINDOW_WORDS]  # long texts are no one's filler
        benign = [texts[i] for i in short if cat[i] == -1]
        by_class: dict[int, list[str]] = {}
        for i in short:
            by_class.setdefault(int(y[i]), []).append(texts[i])
        for i in held:
            add(texts[i], "line", int(y[i]), k, sources[i].removeprefix("public:") if sources else "lines")
        for _ in range(min(len(benign), MAX_DOCUMENTS)):
            add(" ".join(rng.sample(benign, rng.randint(2, 8))), "benign document", benign_class, k)
        harmful = [i for i in short if cat[i] != -1]
        for i in rng.sample(harmful, min(len(harmful), MAX_DOCUMENTS)):
            same = [t for t in by_class[int(y[i])] if t != texts[i]]
            if same:
                add(
                    " ".join([texts[i], *rng.sample(same, min(len(same), rng.randint(1, 3)))]),
                    "paragraph",
                    int(y[i]),
                    k,
                )
            filler = rng.sample(benign, rng.randint(1, 5))
            filler.insert(rng.randrange(len(filler) + 1), texts[i])
            add(" ".join(filler), "embedded", int(y[i]), k)
    out.label = np.array(labels, dtype=np.int64)
    out.category = category_of(out.label)
    out.fold = np.array(folds_, dtype=np.int64)
    return out


def score_held_out(held: HeldOut, models: list[Model]) -> None:
    """Each held-out text's windows through its fold's model, scored as the runtime scores them."""
    assert held.vectors is not None and held.owner is not None
    runtime = [m.runtime() for m in models]
    starts = np.searchsorted(held.owner, np.arange(len(held.texts) + 1))
    scores = np.zeros((len(held.texts), len(CATEGORIES)))
    for i in range(len(held.texts)):
        scores[i] = runtime[held.fold[i]].text_scores(held.vectors[starts[i] : starts[i + 1]])
    held.scores = scores


# --- thresholds --------------------------------------------------------------------------------


def benign_threshold(
    benign_scores: np.ndarray, budget: float, floor: float, weights: np.ndarray | None = None
) -> float:
    """The lowest threshold (>= floor) that benign scores of at most `budget` of the total weight reach
    (every score weighing the same when `weights` is None)."""
    w = np.ones(len(benign_scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-benign_scores, kind="stable")
    ordered, share = benign_scores[order], np.cumsum(w[order]) / w.sum()
    over = np.flatnonzero(share > budget + 1e-12)  # the first score whose inclusion passes the budget
    t = float(np.nextafter(ordered[over[0]], np.inf)) if len(over) else 0.0
    return max(t, floor)


def union_thresholds(
    benign: np.ndarray, columns: list[int], target: float, floor: float, weights: np.ndarray | None = None
) -> dict[int, float]:
    """Per-column thresholds, each at the same share q of benign scores, with q the largest (found by
    bisection) at which benign texts of at most `target` of the total weight reach any of them."""
    w = np.ones(len(benign)) if weights is None else np.asarray(weights, dtype=np.float64)

    def at(q: float) -> dict[int, float]:
        return {j: benign_threshold(benign[:, j], q, floor, w) for j in columns}

    def union(ts: dict[int, float]) -> float:
        hit = np.any([benign[:, j] >= t for j, t in ts.items()], axis=0)
        return float((w * hit).sum() / w.sum())

    lo, hi = 0.0, target
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if union(at(mid)) <= target else (lo, mid)
    return at(lo)


def source_weights(groups: Sequence[str]) -> np.ndarray:
    """A weight per benign held-out text such that every source (file, public set, the built documents)
    weighs the same in total: a large easy source (grade-school maths) cannot loosen the thresholds."""
    counts = Counter(groups)
    return np.array([1.0 / counts[g] for g in groups])


def choose_thresholds(scores: np.ndarray, cat: np.ndarray, groups: Sequence[str] | None = None) -> np.ndarray:
    """(categories, 3) thresholds for LOW, MEDIUM, HIGH from held-out scores (module docstring); the benign
    budgets count each benign source alike when `groups` (each text's source) is given."""
    benign = scores[cat == -1]
    weights = None if groups is None else source_weights([g for g, c in zip(groups, cat, strict=True) if c == -1])
    content = [CATEGORIES.index(c) for c in CONTENT]
    out = np.zeros((len(CATEGORIES), 3))
    for level, (target, floor) in enumerate(
        ((LOW_BENIGN, LOW_FLOOR), (MEDIUM_BENIGN, MEDIUM_FLOOR), (HIGH_BENIGN, HIGH_FLOOR))
    ):
        # the five content filters together, PROMPT_ATTACK on its own
        for group in (content, [j for j in range(len(CATEGORIES)) if j not in content]):
            for j, t in union_thresholds(benign, group, target, floor, weights).items():
                out[j, level] = max(t, out[j, level - 1] if level else 0.0)
    for j in range(len(CATEGORIES)):
        s, positive = scores[:, j], cat == j
        for t in sorted(set(s[s >= out[j, 2]].tolist())):  # candidate HIGH thresholds, lowest first
            if positive[s >= t].mean() >= HIGH_PRECISION:
                out[j, 2] = t
                break
        else:
            out[j, 2] = float(np.nextafter(s.max(), np.inf))  # nothing is HIGH with that precision
    return out


# --- reports -----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            f"{c!s:{'<' if i == 0 else '>'}{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def category_report(held: HeldOut, thresholds: np.ndarray) -> str:
    """Per category: thresholds, recall on held-out lines, precision and benign flagged over all held-out texts."""
    assert held.scores is not None
    lines = np.array([k == "line" for k in held.kinds])
    benign = held.category == -1
    rows = []
    for j, name in enumerate(CATEGORIES):
        s, positive = held.scores[:, j], held.category == j
        row = [name, str(int((positive & lines).sum())), *(f"{t:.3f}" for t in thresholds[j])]
        for t in thresholds[j]:
            flagged: np.ndarray = s >= t
            precision = float(positive[flagged].mean()) if flagged.any() else float("nan")
            row += [
                pct(float(flagged[positive & lines].mean())),
                f"{precision:.2f}",
                pct(float(flagged[benign].mean())),
            ]
        rows.append(row)
    headers = ["category", "lines", "t LOW", "t MED", "t HIGH"]
    for band in ("LOW", "MED", "HIGH"):
        headers += [f"rec% {band}", f"prec {band}", f"ben% {band}"]
    return table(headers, rows)


def union_report(held: HeldOut, thresholds: np.ndarray) -> str:
    """The five content filters together at each strength, by kind of held-out text."""
    assert held.scores is not None
    content = [CATEGORIES.index(c) for c in CONTENT]
    kinds = np.array(held.kinds)
    harmful = np.isin(held.category, content)
    rows = []
    for kind in KINDS:
        for is_harmful in (True, False):
            members = (kinds == kind) & (harmful if is_harmful else held.category == -1)
            if not members.any():
                continue
            label = f"{'harmful' if is_harmful else 'benign'} {kind}" if kind == "line" else kind
            row = [label, str(int(members.sum()))]
            for strength in ("LOW", "MEDIUM", "HIGH"):
                level = {"LOW": 2, "MEDIUM": 1, "HIGH": 0}[strength]  # the lowest confidence each strength blocks
                hit = (held.scores[members][:, content] >= thresholds[content, level]).any(axis=1)
                row.append(pct(float(hit.mean())))
            rows.append(row)
    return table(["held-out texts, % blocked", "n", "strength LOW", "MEDIUM", "HIGH"], rows)


def source_report(held: HeldOut, thresholds: np.ndarray) -> str:
    """The share of each benign source's held-out texts the five content filters block, per strength."""
    assert held.scores is not None
    content = [CATEGORIES.index(c) for c in CONTENT]
    groups = np.array(held.groups)
    rows = []
    for group in sorted(set(groups[held.category == -1].tolist())):
        members = (groups == group) & (held.category == -1)
        row = [group, str(int(members.sum()))]
        for level in (2, 1, 0):  # LOW, MEDIUM, HIGH strength: the lowest confidence each blocks
            row.append(pct(float((held.scores[members][:, content] >= thresholds[content, level]).any(axis=1).mean())))
        rows.append(row)
    return table(["benign held-out source, % blocked", "n", "strength LOW", "MEDIUM", "HIGH"], rows)


def confusion(p: np.ndarray, y: np.ndarray) -> str:
    predicted = p.argmax(axis=1)
    rows = []
    for i, name in enumerate(CLASSES):
        counts = np.bincount(predicted[y == i], minlength=len(CLASSES))
        rows.append([name, *(str(c) for c in counts)])
    return table(["true \\ predicted", *(c[:6] for c in CLASSES)], rows)


# --- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=TRAIN_DIR)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cache", type=Path, default=None, help="an .npz to keep embeddings in between runs")
    parser.add_argument(
        "--public",
        type=Path,
        default=None,
        help="the public training set (scripts/guardrail_data.py writes ~/.cache/outcrop/guardrail-train/public.jsonl)",
    )
    parser.add_argument("--no-augment", action="store_true", help="train on the lines only")
    parser.add_argument("--benign-weight", type=float, default=BENIGN_WEIGHT, help="BENIGN's weight / all harmful")
    parser.add_argument(
        "--embedder",
        choices=["minilm", "static"],
        default="minilm",
        help="the STANDARD tier's MiniLM (default) or the CLASSIC tier's static vectors",
    )
    parser.add_argument(
        "--static",
        action="store_true",
        help="shorthand: --embedder static --out outcrop/guardrails/data/content_classifier_static.npz",
    )
    args = parser.parse_args(argv)
    if args.static:
        args.embedder, args.out = "static", OUT.with_name("content_classifier_static.npz")

    texts, y, sources = read_examples(args.data)
    project_lines = len(texts)
    if args.public is not None:
        texts, y, sources = merge(texts, y, sources, read_public(args.public))
        log(f"public rows: {len(texts) - project_lines} ({args.public})")
    counts = np.bincount(y, minlength=len(CLASSES))
    log("examples: " + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts, strict=True)))
    if (counts == 0).any():
        raise SystemExit("every class needs examples")
    embed: Embedder | StaticTextEmbedder = Embedder(args.cache) if args.embedder == "minilm" else StaticTextEmbedder()
    x, x_long, long_owner = line_vectors(texts, y, embed)
    embed.save()
    if args.embedder == "minilm":  # the project's own lines (the public rows were deduplicated at 0.9)
        check_over_refusal_apart(x[:project_lines], texts[:project_lines], embed)

    fold = folds(y, sources, SEED)
    n_folds = int(fold.max()) + 1
    held = held_out_texts(texts, y, fold, sources)
    held.embed(embed)
    embed.save()
    if args.no_augment:
        x_aug, y_aug, f_aug = np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    else:
        x_aug, y_aug, f_aug = held.augmentation()
        log(f"augmentation: {len(y_aug)} windows of held-out documents and paragraphs, each used by the other folds")
    if len(long_owner):
        x_aug = np.concatenate([x_aug, x_long])
        y_aug = np.concatenate([y_aug, y[long_owner]])
        f_aug = np.concatenate([f_aug, fold[long_owner]])
        log(f"windows of long texts: {len(long_owner)}, each with its text's class and fold")

    best: tuple[float, float, np.ndarray, list[Model]] | None = None
    for decay in DECAY_GRID:
        p = np.zeros((len(y), len(CLASSES)))
        models = []
        for k in range(n_folds):
            train_x = np.concatenate([x[fold != k], x_aug[f_aug != k]])
            train_y = np.concatenate([y[fold != k], y_aug[f_aug != k]])
            model = fit(train_x, train_y, decay, args.benign_weight)
            p[fold == k] = model.runtime().probabilities(x[fold == k])
            models.append(model)
        loss = weighted_log_loss(p, y, args.benign_weight)
        accuracy = float((p.argmax(axis=1) == y).mean())
        log(f"weight decay {decay:g}: held-out weighted log-loss {loss:.4f}, accuracy {100 * accuracy:.1f} %")
        if best is None or loss < best[0]:
            best = (loss, decay, p, models)
    assert best is not None
    _, decay, p, models = best
    log(f"chosen weight decay: {decay:g}\n")

    log(f"held-out ({n_folds} folds, one per benign file; out-of-fold) confusion of the lines, argmax class:")
    log(confusion(p, y) + "\n")
    score_held_out(held, models)
    assert held.scores is not None
    thresholds = choose_thresholds(held.scores, held.category, held.groups)
    log("held-out per category: thresholds; recall % on the category's lines; precision and % of benign texts")
    log("(lines and documents) reaching each confidence, over all held-out texts")
    log(category_report(held, thresholds) + "\n")
    log(union_report(held, thresholds) + "\n")
    log(source_report(held, thresholds) + "\n")

    final = fit(np.concatenate([x, x_aug]), np.concatenate([y, y_aug]), decay, args.benign_weight)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        hidden_weights=final.hidden_weights,
        hidden_bias=final.hidden_bias,
        weights=final.weights,
        bias=final.bias,
        classes=np.array(CLASSES),
        categories=np.array(CATEGORIES),
        thresholds=thresholds.astype(np.float32),
        embedding_model=np.array(EMBEDDING_MODEL if args.embedder == "minilm" else EMBEDDING_MODEL + " static"),
        weight_decay=np.array(decay),
        examples=counts,
    )
    log(
        f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} "
        f"({args.out.stat().st_size} bytes), refitted on all {len(y)} examples and {len(y_aug)} augmentation windows"
    )


if __name__ == "__main__":
    main()
