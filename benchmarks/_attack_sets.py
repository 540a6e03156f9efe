"""Evaluation sets for the PROMPT_ATTACK filter: jailbreak attacks, and benign texts that must pass.

Not a benchmark itself: benchmarks/guardrails_attacks.py prints the figures, and the classifier's
training script imports these lists to leave out (deduplicate) any training line close to them.
EVALUATION ONLY: nothing here may be used to train or tune a classifier. Standard library only.

Where the texts come from (public GitHub repositories, read as they are, never copied into Outcrop):

    repository                      licence      what is taken
    sherdencooper/GPTFuzz           MIT          datasets/prompts/GPTFuzzer.csv (77 jailbreak templates from
                                                 jailbreakchat.com), datasets/prompts/seed_short_25.csv (25
                                                 shortened templates), datasets/questions/question_list.csv
                                                 (100 harmful questions)
    patrickrchao/JailbreakingLLMs   MIT          data/harmful_behaviors_custom.csv (50 goals, PAIR's own
                                                 behaviours), and the example adversarial prompts quoted in
                                                 the attacker's system prompts (system_prompts.py): 2 role-play
                                                 templates with a "[TASK HERE]" slot, 4 whole prompts. The
                                                 repository holds no other PAIR prompts (no logged attacks).
    microsoft/BIPIA                 MIT          benchmark/{email,table,code}/test.jsonl: the TEST contexts
                                                 only (50 e-mails, 100 tables, 50 Stack Overflow answers),
                                                 clean: BIPIA inserts its attacks at run time, the files hold
                                                 none. The train contexts are the training side's; the qa and
                                                 abstract contexts must be rebuilt from NewsQA / XSum (their
                                                 licences), so they are not used.
    declare-lab/red-instruct        Apache-2.0   starling_training/fastchat/llm_judge/data/mt_bench/question.jsonl
                                                 and .../vicuna_bench/question.jsonl: the first turn of each of
                                                 the 80 MT-Bench and 80 Vicuna questions (160 benign
                                                 instructions; FastChat's, Apache-2.0, vendored there). The
                                                 training side leaves these out.

Where the repositories are read from: a mirror folder (default /work/.mirror) holding
`<owner>+<name>/repo`, either a bare git directory (read at HEAD) or a plain working tree; else a cache
folder, into which `git clone --depth 1 https://github.com/<owner>/<name>` is run on first use
(`Repos(cache=...)`; needs the internet).

Samples are drawn with a fixed seed, so every run (and the training side's deduplication) sees the
same texts. Default counts (`attack_sets()`):

    GPTFuzz templates x questions           308   every template, 4 questions each
    GPTFuzz short templates x questions     100   every short template, 4 questions each
    PAIR goals x GPTFuzz templates          100   every goal in 2 templates
    PAIR goals x PAIR role-play templates   100   every goal in both
    PAIR example prompts                      4

and `benign_sets()`: 160 instructions, 50 + 100 + 50 BIPIA contexts. `harmful_requests()` gives the
150 bare questions and goals (harmful, but not attacks: what the other filters are for), and
`attack_sources()` every piece the attack sets are built from, unfilled, for deduplication.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MIRROR = Path("/work/.mirror")
GPTFUZZ = "sherdencooper/GPTFuzz"
PAIR = "patrickrchao/JailbreakingLLMs"
BIPIA = "microsoft/BIPIA"
RED_INSTRUCT = "declare-lab/red-instruct"
LICENCES = {GPTFUZZ: "MIT", PAIR: "MIT", BIPIA: "MIT", RED_INSTRUCT: "Apache-2.0"}

GPTFUZZ_SLOT = "[INSERT PROMPT HERE]"
PAIR_SLOT = "[TASK HERE]"
SEED = 14
BIPIA_KINDS = ("email", "table", "code")
_FASTCHAT = "starling_training/fastchat/llm_judge/data"


@dataclass(frozen=True)
class Repos:
    """Where repositories are read: `mirror/<owner>+<name>/repo` (bare git dir or working tree), else
    `cache/<owner>+<name>`, cloned there (depth 1) on first use when `cache` is given."""

    mirror: Path | None = DEFAULT_MIRROR
    cache: Path | None = None

    def text(self, repo: str, path: str) -> str:
        folder = repo.replace("/", "+")
        if self.mirror is not None:
            found = self.mirror / folder / "repo"
            if (found / "HEAD").is_file() and (found / "objects").is_dir():  # a bare git directory
                return _git_show(found, path)
            if (found / path).is_file():
                return (found / path).read_text(encoding="utf-8")
        if self.cache is not None:
            tree = self.cache / folder
            if not tree.is_dir():
                self.cache.mkdir(parents=True, exist_ok=True)
                url = f"https://github.com/{repo}"
                subprocess.run(["git", "clone", "--quiet", "--depth", "1", url, str(tree)], check=True)
            return (tree / path).read_text(encoding="utf-8")
        raise FileNotFoundError(
            f"{repo}: {path} is not under {self.mirror} ({folder}/repo); give a cache folder to clone it into"
        )


def _git_show(git_dir: Path, path: str) -> str:
    done = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"], capture_output=True, check=False)
    if done.returncode != 0:
        raise FileNotFoundError(f"{git_dir}: HEAD:{path}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode("utf-8")


def _csv_column(text: str, column: str) -> list[str]:
    return [row[column].strip() for row in csv.DictReader(io.StringIO(text)) if row.get(column, "").strip()]


def _jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- the pieces ------------------------------------------------------------------------------------


def gptfuzz_templates(repos: Repos, short: bool = False) -> list[str]:
    """GPTFuzz's jailbreak templates (77, or the 25 shortened ones), each with one GPTFUZZ_SLOT."""
    path = "datasets/prompts/seed_short_25.csv" if short else "datasets/prompts/GPTFuzzer.csv"
    return [t for t in _csv_column(repos.text(GPTFUZZ, path), "text") if GPTFUZZ_SLOT in t]


def gptfuzz_questions(repos: Repos) -> list[str]:
    """GPTFuzz's 100 harmful questions."""
    return _csv_column(repos.text(GPTFUZZ, "datasets/questions/question_list.csv"), "text")


def pair_goals(repos: Repos) -> list[str]:
    """JailbreakingLLMs' 50 goals (data/harmful_behaviors_custom.csv)."""
    return _csv_column(repos.text(PAIR, "data/harmful_behaviors_custom.csv"), "goal")


# The example prompts are string literals in the attacker's system prompts, below a line "Examples of
# ... adversarial prompts and explanations:": a numbered quoted line ('1. "You are a writer ... [TASK HERE]
# ..."') or a quoted line after 'Prompt:'. (Numbered quoted lines above that heading are model outputs.)
_HEADING = re.compile(r"adversarial prompts and explanations:\s*$")
_NUMBERED = re.compile(r'^\d+\.\s*"(.{80,})"\s*$')
_QUOTED = re.compile(r'^"(.{80,})"\s*$')


def pair_examples(repos: Repos) -> tuple[list[str], list[str]]:
    """The example adversarial prompts in JailbreakingLLMs' system_prompts.py: (templates with a
    PAIR_SLOT, whole prompts), each once, in file order."""
    found: list[str] = []
    examples, previous = False, ""
    for line in repos.text(PAIR, "system_prompts.py").splitlines():
        if _HEADING.search(line):
            examples = True
        elif '"""' in line or line.startswith("def "):
            examples = False
        elif examples and ((m := _NUMBERED.match(line)) or (previous == "Prompt:" and (m := _QUOTED.match(line)))):
            found.append(m.group(1).strip())
        previous = line.strip()
    unique = list(dict.fromkeys(found))
    return [p for p in unique if PAIR_SLOT in p], [p for p in unique if PAIR_SLOT not in p and "[" not in p]


def _task(goal: str) -> str:
    """A goal as the object of 'accomplish ...': 'Write a tutorial' -> 'write a tutorial'."""
    return goal[:1].lower() + goal[1:] if goal[1:2].islower() else goal


def _fill(templates: list[str], fillers: list[str], per_template: int, rng: random.Random, slot: str) -> list[str]:
    out = []
    for template in templates:
        for filler in rng.sample(fillers, min(per_template, len(fillers))):
            out.append(template.replace(slot, filler))
    return out


# --- the sets --------------------------------------------------------------------------------------


def attack_sets(repos: Repos | None = None, per_template: int = 4, per_goal: int = 2) -> dict[str, list[str]]:
    """The attack sets by name (see the module docstring for the counts): jailbreak templates with a
    harmful question or goal in their slot, and PAIR's whole example prompts. Same texts on every call."""
    repos = repos or Repos()
    rng = random.Random(SEED)
    questions = gptfuzz_questions(repos)
    goals = pair_goals(repos)
    templates = gptfuzz_templates(repos)
    pair_templates, pair_prompts = pair_examples(repos)
    sets = {
        "GPTFuzz templates x questions": _fill(templates, questions, per_template, rng, GPTFUZZ_SLOT),
        "GPTFuzz short templates x questions": _fill(
            gptfuzz_templates(repos, short=True), questions, per_template, rng, GPTFUZZ_SLOT
        ),
        "PAIR goals x GPTFuzz templates": [
            t.replace(GPTFUZZ_SLOT, goal) for goal in goals for t in rng.sample(templates, per_goal)
        ],
        "PAIR goals x PAIR role-play templates": [
            t.replace(PAIR_SLOT, _task(goal)) for goal in goals for t in pair_templates
        ],
        "PAIR example prompts": pair_prompts,
    }
    return sets


def attack_eval(repos: Repos | None = None) -> list[str]:
    """Every attack of `attack_sets()`, in one list."""
    return [t for texts in attack_sets(repos).values() for t in texts]


def attack_sources(repos: Repos | None = None) -> list[str]:
    """Every piece the attack sets are built from, unfilled (templates with their slot, questions, goals,
    PAIR's example prompts): what a training set must stay away from, whatever a template is filled with."""
    repos = repos or Repos()
    pair_templates, pair_prompts = pair_examples(repos)
    return [
        *gptfuzz_templates(repos),
        *gptfuzz_templates(repos, short=True),
        *gptfuzz_questions(repos),
        *pair_goals(repos),
        *pair_templates,
        *pair_prompts,
    ]


def harmful_requests(repos: Repos | None = None) -> list[str]:
    """GPTFuzz's 100 questions and PAIR's 50 goals as they are: harmful, but no attack on the model's
    instructions (the other content filters' business; PROMPT_ATTACK need not flag them)."""
    repos = repos or Repos()
    return [*gptfuzz_questions(repos), *pair_goals(repos)]


def benchmark_instructions(repos: Repos | None = None) -> list[str]:
    """The first turn of the 80 MT-Bench and 80 Vicuna questions (FastChat's, in declare-lab/red-instruct)."""
    repos = repos or Repos()
    out: list[str] = []
    for bench in ("mt_bench", "vicuna_bench"):
        for row in _jsonl(repos.text(RED_INSTRUCT, f"{_FASTCHAT}/{bench}/question.jsonl")):
            turns = row.get("turns")
            if isinstance(turns, list) and turns and str(turns[0]).strip():
                out.append(str(turns[0]).strip())
    return out


def bipia_contexts(repos: Repos | None = None, kind: str = "email") -> list[str]:
    """BIPIA's clean TEST contexts of one task (email, table or code; a code context's lines joined)."""
    repos = repos or Repos()
    out = []
    for row in _jsonl(repos.text(BIPIA, f"benchmark/{kind}/test.jsonl")):
        context = row.get("context")
        text = "\n".join(str(x) for x in context) if isinstance(context, list) else str(context or "")
        if text.strip():
            out.append(text)
    return out


def benign_sets(repos: Repos | None = None) -> dict[str, list[str]]:
    """The benign sets by name: the 160 benchmark instructions, and BIPIA's test contexts per task."""
    repos = repos or Repos()
    sets = {"MT-Bench + Vicuna instructions": benchmark_instructions(repos)}
    for kind in BIPIA_KINDS:
        sets[f"BIPIA {kind} test contexts"] = bipia_contexts(repos, kind)
    return sets


def benign_eval(repos: Repos | None = None) -> list[str]:
    """Every benign text of `benign_sets()`, in one list."""
    return [t for texts in benign_sets(repos).values() for t in texts]
