"""Fine-tune all-MiniLM-L6-v2 for the STANDARD tier's content filters: low-rank adapters (LoRA) and a head.

Why
    The classifier of scripts/train_guardrail_classifier.py reads MiniLM's sentence vectors as they
    are. Those vectors place a text by its topic ("a history of a war" near "I will hurt you"), which
    is what a content filter must look past. Training the encoder too lets it learn what separates
    harm from its topic. A fully fine-tuned copy of MiniLM would be 90 MB to ship; low-rank adapters
    are a few hundred KB: each linear layer W of the encoder gets W + B @ A with A (RANK, inputs) and
    B (outputs, RANK), trained while W stays frozen, and the runtime adds B @ A to a private copy of
    MiniLM when it loads (outcrop/guardrails/tuned.py).

Data, held-out split, thresholds
    Exactly those of scripts/train_guardrail_classifier.py, imported from it: the same lines, the same
    folds (one per benign author file), the same held-out documents, paragraphs and embedded lines, the
    same threshold rule (a benign budget for the five content filters together). The held-out
    documents' and paragraphs' windows of the other folds are training examples too, as there.

Model
    MiniLM with adapters of rank RANK (scale ALPHA / RANK, dropout 0.1 on their input) on every linear
    layer of its six transformer blocks, mean pooling and L2 normalization as the runtime's embedder
    does, then the head the runtime already runs (content.ContentClassifier): one hidden layer of
    HIDDEN ReLU units on the normalized vector times SCALE, dropout, a softmax over the 8 classes.
    Class-weighted cross-entropy (train_guardrail_classifier.class_weights), AdamW (adapters LR_LORA,
    head LR_HEAD, linear warm-up then decay), batches of BATCH, EPOCHS epochs.
    A configuration with rank 0 trains the head alone on the frozen encoder: the baseline the
    adapters must beat, trained by the same loop.

Choice, made on the held-out split only (never on an evaluation set)
    Each configuration of CONFIGS is trained once per fold, its held-out texts scored through
    windows() and ContentClassifier exactly as the runtime scores them, and its thresholds set by the
    shared rule. The figure of merit is the mean share blocked, at MEDIUM, of the held-out harmful
    lines, paragraphs and embedded lines. The best adapter configuration is kept only when it beats
    the frozen baseline's figure by at least MARGIN points; the script says which it kept and why.

Output
    --out-dir gets content_classifier.npz (the head and thresholds, in the runtime's format, with
    embedding_model "all-MiniLM-L6-v2+lora") and content_encoder_lora.npz (for each adapted layer its
    A and B, the scale folded into B). Copy them to outcrop/guardrails/data/ to ship them.

Measured (November 2026, on an H200; the frozen baseline by this same loop)
    Held-out figure: frozen encoder 61.3, lora16 73.0 (lines blocked at MEDIUM 61 % -> 77 %, embedded
    lines 35 % -> 46 %, at the same benign budget). On the moderation set (benchmarks/
    guardrails_quality.py, evaluation only), lora16 reached F1 0.67 at MEDIUM with 86.4 % of benign
    samples allowed, against 0.68 at 90.5 % for the shipped classifier on the plain encoder
    (train_guardrail_classifier.py): the gain on our own data did not carry over to real traffic, and
    the adapted encoder costs a second MiniLM pass whenever topics or grounding run too. So it is not
    shipped; the runtime reads it when an operator puts both files in place.

Run it (about 2 minutes per configuration on one GPU, with the folds in parallel as below; on
2 CPU cores about 10 minutes per epoch and fold)::

    python scripts/finetune_guardrail_encoder.py --out-dir /tmp/tuned
    # one configuration, its three folds and the final model side by side, then the thresholds:
    for p in 0 1 2 final; do python scripts/finetune_guardrail_encoder.py --configs lora16 --part $p \
        --out-dir /tmp/tuned & done; wait
    python scripts/finetune_guardrail_encoder.py --configs lora16 --part combine --out-dir /tmp/tuned
    cp /tmp/tuned/content_classifier.npz /tmp/tuned/content_encoder_lora.npz outcrop/guardrails/data/

Seeded (folds, documents, initial weights, batch order); a GPU's kernels are not bit-reproducible.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import train_guardrail_classifier as base  # noqa: E402

from outcrop.guardrails.content import CATEGORIES, ContentClassifier, windows  # noqa: E402

EMBEDDING_MODEL = "all-MiniLM-L6-v2+lora"
HIDDEN, SCALE, HEAD_DROPOUT = 256, math.sqrt(384), 0.2
BATCH, LR_HEAD, LR_LORA, DECAY_HEAD, WARMUP = 32, 1e-3, 5e-4, 0.1, 0.06
MAX_TOKENS = 256  # the runtime embedder's limit for MiniLM
MARGIN = 2.0  # points of held-out recall an adapter configuration must gain over the frozen encoder


@dataclass(frozen=True)
class Config:
    name: str
    rank: int  # 0: the encoder stays frozen, only the head trains
    epochs: int
    alpha: float = 32.0


CONFIGS = {
    "frozen": Config("frozen", 0, 5),
    "lora16": Config("lora16", 16, 3),
    "lora16x6": Config("lora16x6", 16, 6),
}


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --- the network -------------------------------------------------------------------------------


def _torch() -> Any:
    import torch

    return torch


def build(model_path: Path, config: Config, device: str) -> Any:
    """MiniLM (adapters added when config.rank > 0) with the classification head."""
    torch = _torch()
    from transformers import AutoModel

    nn = torch.nn

    class LoRALinear(nn.Module):  # type: ignore[misc]
        def __init__(self, linear: Any, rank: int, alpha: float) -> None:
            super().__init__()
            self.linear = linear
            self.a = nn.Parameter(torch.empty(rank, linear.in_features))
            nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
            self.b = nn.Parameter(torch.zeros(linear.out_features, rank))
            self.scale = alpha / rank
            self.dropout = nn.Dropout(0.1)

        def forward(self, x: Any) -> Any:
            return self.linear(x) + (self.dropout(x) @ self.a.T @ self.b.T) * self.scale

    class Net(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(model_path), dtype=torch.float32)
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            self.adapted: list[str] = []
            if config.rank:
                for name, module in list(self.encoder.encoder.named_modules()):
                    for child_name, child in list(module.named_children()):
                        if isinstance(child, nn.Linear):
                            setattr(module, child_name, LoRALinear(child, config.rank, config.alpha))
                            self.adapted.append(".".join(filter(None, ("encoder.encoder", name, child_name))))
            self.hidden = nn.Linear(384, HIDDEN)
            self.out = nn.Linear(HIDDEN, len(base.CLASSES))
            self.dropout = nn.Dropout(HEAD_DROPOUT)

        def embed(self, ids: Any, mask: Any) -> Any:
            states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

        def forward(self, ids: Any, mask: Any) -> Any:
            h = torch.relu(self.hidden(self.embed(ids, mask) * SCALE))
            return self.out(self.dropout(h))

    torch.manual_seed(base.SEED)
    return Net().to(device)


class Tokens:
    """Each text tokenized once (MiniLM's tokenizer, cut at MAX_TOKENS), batched with little padding."""

    def __init__(self, model_path: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.memo: dict[str, list[int]] = {}

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        for start in range(0, len(missing), 1024):
            chunk = missing[start : start + 1024]
            encoded = self.tokenizer(chunk, truncation=True, max_length=MAX_TOKENS)["input_ids"]
            self.memo.update(zip(chunk, encoded, strict=True))
        return [self.memo[t] for t in texts]


def pad(rows: Sequence[list[int]], device: str) -> tuple[Any, Any]:
    torch = _torch()
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def batches(lengths: Sequence[int], rng: random.Random) -> list[list[int]]:
    """Shuffled batches of indices, each drawn from texts of similar length (sorted within pools of
    50 batches), so that short lines are not padded to a long post's length."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out: list[list[int]] = []
    pool = BATCH * 50
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        out += [chunk[j : j + BATCH] for j in range(0, len(chunk), BATCH)]
    rng.shuffle(out)
    return out


def train(texts: list[str], y: np.ndarray, tokens: Tokens, model_path: Path, config: Config, device: str) -> Any:
    torch = _torch()
    net = build(model_path, config, device)
    ids = tokens.ids(texts)
    weight = torch.tensor(base.class_weights(y), dtype=torch.float32, device=device)
    labels = torch.tensor(y, device=device)
    head = [*net.hidden.parameters(), *net.out.parameters()]
    lora = [p for n, p in net.named_parameters() if n.endswith((".a", ".b"))]
    groups = [{"params": head, "lr": LR_HEAD, "weight_decay": DECAY_HEAD}]
    if lora:
        groups.append({"params": lora, "lr": LR_LORA, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    rng = random.Random(base.SEED)
    plan = [batches([len(r) for r in ids], rng) for _ in range(config.epochs)]
    total = sum(len(p) for p in plan)
    warm = max(1, int(WARMUP * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    net.train()
    if not config.rank:
        net.encoder.eval()  # frozen: no dropout inside it either
    step, began = 0, time.perf_counter()
    for epoch in range(config.epochs):
        running = 0.0
        for batch in plan[epoch]:
            i, m = pad([ids[j] for j in batch], device)
            logits = net(i, m)
            target = labels[batch]
            loss = (torch.nn.functional.cross_entropy(logits, target, reduction="none") * weight[target]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss)
            step += 1
        log(f"    epoch {epoch + 1}: mean loss {running / len(plan[epoch]):.4f} ({time.perf_counter() - began:.0f} s)")
    net.eval()
    return net


def embed(net: Any, texts: Sequence[str], tokens: Tokens, device: str) -> np.ndarray:
    """The tuned encoder's normalized vectors, as the runtime computes them."""
    torch = _torch()
    ids = tokens.ids(texts)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(ids), 384), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), 256):
            chunk = order[start : start + 256]
            i, m = pad([ids[j] for j in chunk], device)
            out[chunk] = net.embed(i, m).float().cpu().numpy()
    return out


def runtime_classifier(net: Any, thresholds: np.ndarray | None = None) -> ContentClassifier:
    """The head as content.ContentClassifier runs it (SCALE folded into the hidden layer)."""
    w1 = net.hidden.weight.detach().float().cpu().numpy() * SCALE
    b1 = net.hidden.bias.detach().float().cpu().numpy()
    w2 = net.out.weight.detach().float().cpu().numpy()
    b2 = net.out.bias.detach().float().cpu().numpy()
    t = np.zeros((len(CATEGORIES), 3)) if thresholds is None else thresholds
    return ContentClassifier(w2, b2, base.CLASSES, t, EMBEDDING_MODEL, (w1, b1))


def adapters(net: Any) -> dict[str, np.ndarray]:
    """{layer name + ".lora_a": A, layer name + ".lora_b": B * scale} for every adapted layer."""
    out: dict[str, np.ndarray] = {}
    modules = dict(net.named_modules())
    for name in net.adapted:
        m = modules[name]
        key = name.removeprefix("encoder.")  # the names in MiniLM's own state dict
        out[key + ".lora_a"] = m.a.detach().float().cpu().numpy()
        out[key + ".lora_b"] = (m.b.detach().float() * m.scale).cpu().numpy()
    return out


# --- held-out comparison -----------------------------------------------------------------------


def figure(held: base.HeldOut, thresholds: np.ndarray) -> float:
    """Mean % blocked at MEDIUM over the held-out harmful lines, paragraphs and embedded lines."""
    assert held.scores is not None
    content = [CATEGORIES.index(c) for c in base.CONTENT]
    kinds = np.array(held.kinds)
    harmful = np.isin(held.category, content)
    hit = (held.scores[:, content] >= thresholds[content, 1]).any(axis=1)
    return float(np.mean([100 * hit[(kinds == k) & harmful].mean() for k in ("line", "paragraph", "embedded")]))


def held_out_scores(
    config: Config,
    texts: list[str],
    y: np.ndarray,
    fold: np.ndarray,
    held: base.HeldOut,
    aug: tuple[list[str], np.ndarray, np.ndarray],
    tokens: Tokens,
    model_path: Path,
    device: str,
    only: int | None = None,
) -> np.ndarray:
    """(held-out texts, categories) scores, each fold's texts scored by a model trained without that
    fold, through windows() and ContentClassifier as the runtime scores them; NaN outside fold `only`
    when one is given."""
    pieces = [windows(t) for t in held.texts]
    owner = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])
    flat = [w for p in pieces for w in p]
    scores = np.full((len(held.texts), len(CATEGORIES)), np.nan)
    starts = np.searchsorted(owner, np.arange(len(held.texts) + 1))
    aug_texts, aug_y, aug_fold = aug
    for k in range(int(fold.max()) + 1) if only is None else (only,):
        log(f"  {config.name}, fold {k}:")
        train_texts = [t for t, f in zip(texts, fold, strict=True) if f != k]
        train_texts += [t for t, f in zip(aug_texts, aug_fold, strict=True) if f != k]
        train_y = np.concatenate([y[fold != k], aug_y[aug_fold != k]])
        net = train(train_texts, train_y, tokens, model_path, config, device)
        mine = np.flatnonzero(held.fold == k)
        rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in mine])
        vectors = embed(net, [flat[r] for r in rows], tokens, device)
        at = np.searchsorted(rows, starts)  # where each text's windows begin among `rows`
        classifier = runtime_classifier(net)
        for i in mine:
            scores[i] = classifier.text_scores(vectors[at[i] : at[i + 1]])
        del net
    return scores


def report(config: Config, held: base.HeldOut, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """Thresholds by the shared rule, the held-out tables, and the figure of merit."""
    held.scores = scores
    thresholds = base.choose_thresholds(scores, held.category)
    score = figure(held, thresholds)
    log(f"{config.name}: held-out figure {score:.1f}")
    log(base.category_report(held, thresholds))
    log(base.union_report(held, thresholds) + "\n")
    return score, thresholds


# --- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=base.TRAIN_DIR)
    parser.add_argument("--model", type=Path, default=None, help="MiniLM's folder (default: the packaged one)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"among {', '.join(CONFIGS)}")
    parser.add_argument(
        "--part",
        default="all",
        help="all (default); or one part of it, to run side by side with the first of --configs: a fold "
        "number (its held-out scores), final (the model on all data), then combine (thresholds)",
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    args = parser.parse_args(argv)
    torch = _torch()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_float32_matmul_precision("high")  # TF32 on a GPU that has it
    if args.model is None:
        from outcrop.engines.embeddings import _default_model_path

        args.model = Path(_default_model_path())
    configs = [CONFIGS[c] for c in args.configs.split(",")]
    log(f"device {device}; configurations: {', '.join(c.name for c in configs)}")

    texts, y, sources = base.read_examples(args.data)
    fold = base.folds(y, sources, base.SEED)
    held = base.held_out_texts(texts, y, fold)
    keep = [i for i, k in enumerate(held.kinds) if k in ("benign document", "paragraph")]
    aug_texts, aug_y, aug_fold = [], [], []
    for i in keep:
        for w in windows(held.texts[i]):
            aug_texts.append(w)
            aug_y.append(int(held.label[i]))
            aug_fold.append(int(held.fold[i]))
    aug = (aug_texts, np.array(aug_y, dtype=np.int64), np.array(aug_fold, dtype=np.int64))
    log(f"{len(texts)} lines, {len(aug_texts)} augmentation windows, {len(held.texts)} held-out texts")
    tokens = Tokens(args.model)

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    run = (texts, y, fold, held, aug, tokens, args.model, device)
    if args.part not in ("all", "final", "combine"):  # one held-out fold, to run beside the others
        scores = held_out_scores(configs[0], *run, only=int(args.part))
        np.save(out / f"scores_{configs[0].name}_{args.part}.npy", scores)
        return
    if args.part == "final":
        write_final(train([*texts, *aug_texts], np.concatenate([y, aug[1]]), tokens, args.model, configs[0], device),
                    configs[0], np.zeros((len(CATEGORIES), 3)), y, out, tokens, texts, device)  # fmt: skip
        return
    if args.part == "combine":
        parts = [np.load(out / f"scores_{configs[0].name}_{k}.npy") for k in range(int(fold.max()) + 1)]
        scores = np.where(np.isnan(parts[0]), 0.0, parts[0])
        for part in parts[1:]:
            scores = np.where(np.isnan(part), scores, part)
        _, thresholds = report(configs[0], held, scores)
        with np.load(out / "content_classifier.npz", allow_pickle=False) as data:
            saved = dict(data)
        saved["thresholds"] = thresholds.astype(np.float32)
        np.savez_compressed(out / "content_classifier.npz", **saved)
        log(f"wrote the held-out thresholds into {out}/content_classifier.npz")
        return

    results: dict[str, tuple[float, np.ndarray]] = {}
    for config in configs:
        began = time.perf_counter()
        results[config.name] = report(config, held, held_out_scores(config, *run))
        log(f"({time.perf_counter() - began:.0f} s)")
    tuned = [c for c in configs if c.rank]
    if not tuned:
        return
    best = max(tuned, key=lambda c: results[c.name][0])
    if "frozen" in results and results[best.name][0] < results["frozen"][0] + MARGIN:
        log(f"kept none: {best.name} {results[best.name][0]:.1f} is not {MARGIN} points above frozen")
        return
    log(f"kept {best.name}: held-out figure {results[best.name][0]:.1f}")
    net = train([*texts, *aug_texts], np.concatenate([y, aug[1]]), tokens, args.model, best, device)
    write_final(net, best, results[best.name][1], y, out, tokens, texts, device)


def write_final(
    net: Any, config: Config, thresholds: np.ndarray, y: np.ndarray, out: Path, tokens: Tokens,
    texts: list[str], device: str,
) -> None:  # fmt: skip
    classifier = runtime_classifier(net, thresholds)
    assert classifier.hidden is not None
    np.savez_compressed(
        out / "content_classifier.npz",
        hidden_weights=classifier.hidden[0],
        hidden_bias=classifier.hidden[1],
        weights=classifier.weights,
        bias=classifier.bias,
        classes=np.array(base.CLASSES),
        categories=np.array(CATEGORIES),
        thresholds=thresholds.astype(np.float32),
        embedding_model=np.array(EMBEDDING_MODEL),
        examples=np.bincount(y, minlength=len(base.CLASSES)),
        configuration=np.array(f"{config.name}: rank {config.rank}, alpha {config.alpha}, {config.epochs} epochs"),
    )
    np.savez_compressed(out / "content_encoder_lora.npz", **adapters(net))
    np.save(out / "probe_vectors.npy", embed(net, texts[:64], tokens, device))  # to check the runtime's merge
    log(f"wrote {out}/content_classifier.npz and content_encoder_lora.npz")


if __name__ == "__main__":
    main()
