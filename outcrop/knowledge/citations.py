"""Citations of a generated answer: which spans of it rest on which retrieved passages.

The model is asked to end each sentence that uses a search result with that result's number in square brackets
("Paris is the capital [1]." or "[1][3]" or "[1, 3]"). `CitationParser` reads the answer as it streams, strips
the markers (and the space before them) and cuts the clean text into segments: a marker cites the text since
the previous cited segment, up to and including the punctuation right after the marker. Only numbers of passages
that were given count as markers; "[2024]" or "a[3]" past the last passage stay text as written.

Where the model cites nothing (a small model often ignores the instruction, and a caller's own prompt template
may not ask for it), each sentence is attributed to the passage that shares the largest part of its content
words, if that part is at least ATTRIBUTION_THRESHOLD; consecutive sentences with the same passage are one
segment, and a sentence no passage covers is a segment without references (Bedrock reports those too).
Text after the last marker is attributed the same way.

Offsets are in characters of the clean text; `end` is exclusive here (the wire encoder states Bedrock's form).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ATTRIBUTION_THRESHOLD = 0.3  # share of a sentence's content words a passage must hold to be cited for it
_MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_PARTIAL = re.compile(r"\s*(?:\[\d{0,3}(?:\s*,\s*\d{0,3})*(?:\s*,)?\s*)?")  # what may still become a marker
_AFTER = frozenset(".,;:!?)\"'\u201d\u2019")  # punctuation that stays with the segment a marker closes
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"')\]\u201d\u2019]*|\n+|$)")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = (
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in into is "
    "it its me my no not of on or our she so than that the their them then there these they this those to was we "
    "were what when where which who why will with would you your"
)
_STOP = frozenset(_STOPWORDS.split())


@dataclass(frozen=True)
class Segment:
    start: int
    end: int  # exclusive
    refs: tuple[int, ...]  # 1-based passage numbers, in the order cited


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and (len(w) > 2 or w.isdigit())}


def attribute(text: str, passages: Sequence[str], start: int = 0, end: int | None = None) -> list[Segment]:
    """Segments of text[start:end] by sentence, each citing the passage sharing most of its content words."""
    end = len(text) if end is None else end
    bags = [content_words(p) for p in passages]
    out: list[Segment] = []
    for m in _SENTENCE.finditer(text, start, end):
        sentence = m.group()
        if not sentence.strip():
            continue
        lead = len(sentence) - len(sentence.lstrip())
        a, b = m.start() + lead, m.start() + len(sentence.rstrip())
        words = content_words(sentence)
        best, share = 0, 0.0
        for i, bag in enumerate(bags, start=1):
            s = len(words & bag) / len(words) if words else 0.0
            if s > share:
                best, share = i, s
        refs = (best,) if best and share >= ATTRIBUTION_THRESHOLD else ()
        if out and out[-1].refs == refs and text[out[-1].end : a].strip() == "":
            out[-1] = Segment(out[-1].start, b, refs)
        else:
            out.append(Segment(a, b, refs))
    return out


class CitationParser:
    """Feed the answer as it arrives; get back the clean text to send and the segments completed so far."""

    def __init__(self, n_passages: int, passages: Sequence[str] = ()) -> None:
        self.n = n_passages
        self.passages = list(passages)
        self.text = ""  # the clean answer so far
        self._held = ""  # raw text that may still turn out to be (part of) a marker
        self._open: list[int] | None = None  # references of markers whose segment is still open
        self._start = 0  # where the next segment may start
        self.marked = False  # the model cited something

    def feed(self, raw: str) -> tuple[str, list[Segment]]:
        return self._drain(self._held + raw, final=False)

    def finish(self) -> tuple[str, list[Segment]]:
        """The rest of the text, and every segment not reported yet (attributed where nothing was cited)."""
        held = self._held if self._held.strip() else ""  # whitespace at the very end of the answer goes
        out, done = self._drain(held, final=True)
        if self._open is not None:
            done.append(self._close(len(self.text)))
        if self.text[self._start :].strip():
            done += attribute(self.text, self.passages, self._start)
        self._start = len(self.text)
        return out, done

    def _refs(self, match: re.Match[str]) -> list[int] | None:
        numbers = [int(n) for n in re.split(r"\s*,\s*", match.group(1))]
        return numbers if all(1 <= n <= self.n for n in numbers) else None

    def _drain(self, buf: str, final: bool) -> tuple[str, list[Segment]]:
        out: list[str] = []
        done: list[Segment] = []
        i = 0
        while i < len(buf):
            j = i
            while j < len(buf) and buf[j] != "[" and not buf[j].isspace():
                j += 1
            if j > i:
                self._emit(buf[i:j], out, done)
                i = j
                continue
            m = _MARKER.match(buf, i)
            refs = self._refs(m) if m else None
            if m and refs is not None:
                self.marked = True
                if self._open is None:
                    self._open = []
                self._open += [r for r in refs if r not in self._open]
                i = m.end()
                continue
            if not final and not m and _PARTIAL.fullmatch(buf, i):
                break  # wait for more text: this may still become a marker
            self._emit(buf[i], out, done)
            i += 1
        self._held = buf[i:]
        return "".join(out), done

    def _emit(self, piece: str, out: list[str], done: list[Segment]) -> None:
        if self._open is not None:
            k = 0
            while k < len(piece) and piece[k] in _AFTER:
                k += 1
            if k < len(piece):
                done.append(self._close(len(self.text) + k))
        self.text += piece
        out.append(piece)

    def _close(self, end: int) -> Segment:
        refs = tuple(self._open or ())
        self._open = None
        start = self._start
        while start < min(end, len(self.text)) and self.text[start].isspace():
            start += 1
        self._start = end
        return Segment(start, end, refs)
