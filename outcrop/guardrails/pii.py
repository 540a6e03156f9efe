"""Sensitive-information (PII) detection for guardrails: Bedrock's piiEntitiesConfig and regexesConfig.

`PiiScanner(entities, regexes).scan(text)` finds the Bedrock PII types (and named custom regexes) in a text;
`mask(text, findings)` replaces each finding with `{TYPE}` / `{regex name}`, as Bedrock's ANONYMIZE does.

Detection runs presidio-analyzer's predefined recognizers where presidio has one and our own presidio
PatternRecognizers where it has not, with no NLP engine at all: no spaCy model is loaded (none is
installed) and nothing is downloaded (tldextract is given its bundled suffix list). Context words are
scored the way presidio's LemmaContextAwareEnhancer scores them: a recognizer's context word among the 5
words before a match (stop words and punctuation not counted) adds 0.35 to the score, to at least 0.4.
Words are matched whole after lowercasing and dropping a plural or possessive `s` ("cards" matches
`card`; `us` does not match "because").

Scores and the threshold. A finding is kept when its score is at least `SCORE_THRESHOLD` (0.4), presidio's
own floor for a match confirmed by context. Weak patterns (a bare 9-digit number could be an SSN, a
passport, a routing or an account number) score 0.01-0.3 and so only count next to a context word
("SSN", "passport", "routing", "account"): plain numbers, dates and prices never reach the threshold.
Checksums: card numbers (Luhn) and IBANs (mod 97) score 1.0 when valid and are dropped when not; CA SIN
(Luhn), ABA routing (3-7-1) and NHS (mod 11) numbers are dropped when invalid but still need context,
since about one random number in ten passes those checks and phone numbers share their shape. Custom
regexes score 1.0. Overlaps: the higher score wins, then the longer match, then the one whose context
word is nearer, then the more specific type (custom regexes first, NAME last: `_SPECIFICITY`).

How each type is found (P = presidio's predefined recognizer, O = our pattern recognizer):

    EMAIL, IP_ADDRESS, MAC_ADDRESS, INTERNATIONAL_BANK_ACCOUNT_NUMBER, CREDIT_DEBIT_CARD_NUMBER, PHONE,
    URL, US_SOCIAL_SECURITY_NUMBER, US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER, US_PASSPORT_NUMBER,
    US_BANK_ACCOUNT_NUMBER, US_BANK_ROUTING_NUMBER, DRIVER_ID (US and UK formats),
    UK_NATIONAL_HEALTH_SERVICE_NUMBER, UK_NATIONAL_INSURANCE_NUMBER, CA_SOCIAL_INSURANCE_NUMBER:
        P, with our context words; e-mail domains checked against tldextract's bundled suffix list
        (offline); phone numbers via libphonenumber for US/CA, GB, DE, FR, IN, AU and any +country form.
    CREDIT_DEBIT_CARD_NUMBER also O: "card ending in 1234" (the last four digits).
    LICENSE_PLATE: P (UK registrations, near "car", "plate", "reg"...) and O: a value after "plate",
        "plate number", "registration number".
    ADDRESS: O: number + capitalised street name + suffix (St, Street, Ave, Road, Blvd, Lane...) with an
        optional unit, city, state + ZIP and country; "City, ST 12345"; "PO Box 12"; "Suite #12,
        Building 123"; P: UK postcodes and Canadian postal codes near "address", "postcode"...
    NAME: O: one to three capitalised words after a title (Dr./Mr./Ms. X Y - the title is not part of
        the name, as in Bedrock), after "my name is", "name:", "named", "call me", "patient:",
        "dear"/"hi"/"hello" X, "I'm X Y", or after a sign-off ("Regards,\\nX Y").
    AGE: O: "40 years old" -> "40 years" (Bedrock's span), "aged 40", "age: 40", "I am 40.".
    AWS_ACCESS_KEY: O: AKIA/ASIA/ABIA/ACCA/A3T + 16. AWS_SECRET_KEY: O: 40 base64 characters with
        upper, lower case and a digit (a lowercase hex git SHA is not one).
    CA_HEALTH_NUMBER: O: 10 digits (4-3-3, optional version code) or Quebec's 4 letters + 8 digits,
        near "health", "OHIP", "RAMQ"... UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER: O: 10 digits (optional K)
        near "UTR", "tax"...
    CREDIT_DEBIT_CARD_CVV, PIN, PASSWORD, USERNAME: O: the value right after its label ("CVV: 123",
        "PIN is 4821", "password: hunter2", "username is jdoe"); USERNAME also @handles near "Twitter",
        "follow"... PASSWORD/USERNAME after "is" skip common words ("password is incorrect").
    CREDIT_DEBIT_CARD_EXPIRY: O: MM/YY, MM/YYYY, "Jan 2027" near "exp", "expiry", "valid thru"...
    SWIFT_CODE: O: 8 or 11 characters with a real country code; all-letter codes need context ("SWIFT",
        "BIC", "bank"). VEHICLE_IDENTIFICATION_NUMBER: O: 17 characters; a valid ISO 3779 check digit
        scores 1.0, otherwise it needs context ("VIN", "vehicle", "chassis").

Limits. Without a NER model, NAME and ADDRESS are heuristics: a name with no cue ("Alice called
yesterday"), a lowercase name, a street with no number or no suffix, or a city on its own are missed.
Labelled values (CVV, PIN, PASSWORD, USERNAME, LICENSE_PLATE) are missed without their label. Numbers
that need context are missed without it (an unlabelled "485 777 3456" is not an NHS number). Context is
English only. Custom regexes run with the `regex` module, case-sensitively, for at most
`REGEX_TIMEOUT_S` per scan: one that backtracks catastrophically raises TimeoutError rather than failing open.

The recognizers are built once per process, on first use or on `warm_up()`: importing presidio imports
spaCy (and torch, where installed), which takes seconds. A scanner only selects recognizers; scanning is
thread-safe.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import regex

from outcrop.guardrails.pii_patterns import (
    CONTEXT,
    FILE_SUFFIXES,
    PHONE_DIGITS,
    PHONE_TRUNK,
    PHONE_TRUNK_REGIONS,
    SPECS,
    Spec,
)

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

__all__ = ["REGEX_TIMEOUT_S", "SCORE_THRESHOLD", "SUPPORTED", "Finding", "PiiScanner", "mask", "warm_up"]

SCORE_THRESHOLD = 0.4
REGEX_TIMEOUT_S = 1.0

# Most specific first: on an equal score and length the earlier type wins.
_SPECIFICITY: tuple[str, ...] = (
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "EMAIL",
    "URL",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "CREDIT_DEBIT_CARD_NUMBER",
    "VEHICLE_IDENTIFICATION_NUMBER",
    "SWIFT_CODE",
    "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
    "US_SOCIAL_SECURITY_NUMBER",
    "CA_SOCIAL_INSURANCE_NUMBER",
    "UK_NATIONAL_INSURANCE_NUMBER",
    "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
    "CA_HEALTH_NUMBER",
    "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER",
    "US_BANK_ROUTING_NUMBER",
    "US_PASSPORT_NUMBER",
    "CREDIT_DEBIT_CARD_CVV",
    "CREDIT_DEBIT_CARD_EXPIRY",
    "PIN",
    "PASSWORD",
    "USERNAME",
    "LICENSE_PLATE",
    "DRIVER_ID",
    "US_BANK_ACCOUNT_NUMBER",
    "PHONE",
    "AGE",
    "ADDRESS",
    "NAME",
)
SUPPORTED: frozenset[str] = frozenset(_SPECIFICITY)
_RANK = {name: i + 1 for i, name in enumerate(_SPECIFICITY)}  # custom regexes rank 0


@dataclass(frozen=True)
class Finding:
    """One match: a Bedrock PII type (or a custom regex's name when `regex`) and its span in the text."""

    type: str
    match: str
    start: int
    end: int
    regex: bool = False


def mask(text: str, findings: Sequence[Finding]) -> str:
    """Replace each finding with `{TYPE}` (or `{regex name}`); a finding overlapping an earlier one is skipped."""
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if f.start < pos:
            continue
        out += [text[pos : f.start], "{", f.type, "}"]
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


class PiiScanner:
    """Finds the given Bedrock PII types and custom regexes (name, pattern) in texts. Cheap to build."""

    def __init__(self, entities: Iterable[str], regexes: Iterable[tuple[str, str]] = ()) -> None:
        self.entities: tuple[str, ...] = tuple(sorted(set(entities)))
        unknown = [e for e in self.entities if e not in SUPPORTED]
        if unknown:
            raise ValueError(f"unsupported PII entity type(s): {', '.join(unknown)}")
        self._regexes: list[tuple[str, regex.Pattern[str]]] = []
        for name, pattern in regexes:
            try:
                self._regexes.append((name, regex.compile(pattern)))
            except regex.error as e:
                raise ValueError(f"invalid regex {name!r}: {e}") from e

    def scan(self, text: str) -> list[Finding]:
        """Non-overlapping findings, sorted by start (see the module docstring for scores and ties)."""
        candidates = _engine().analyze(text, self.entities) if self.entities and text else []
        for name, compiled in self._regexes:
            for m in compiled.finditer(text, timeout=REGEX_TIMEOUT_S):
                if m.end() > m.start():
                    candidates.append(
                        _Candidate(Finding(name, m.group(), m.start(), m.end(), regex=True), 1.0, _FAR, 0)
                    )
        return _resolve(candidates)


def warm_up() -> None:
    """Build the shared presidio engine now (seconds: it imports spaCy) instead of on the first scan."""
    _engine()


# --- the shared engine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """A detected span before overlaps are settled: higher score, then longer, then nearer context wins."""

    finding: Finding
    score: float
    context_distance: int  # words between the nearest context word and the match; _FAR when none
    rank: int  # _SPECIFICITY position, 0 for custom regexes

    def key(self) -> tuple[float, int, int, int, int]:
        f = self.finding
        return (-self.score, f.start - f.end, self.context_distance, self.rank, f.start)


_FAR = 1_000


def _resolve(candidates: list[_Candidate]) -> list[Finding]:
    kept: list[Finding] = []  # sorted by start, never overlapping: only the neighbours can overlap a newcomer
    starts: list[int] = []
    for c in sorted(candidates, key=_Candidate.key):
        f = c.finding
        i = bisect.bisect_left(starts, f.start)
        if (i > 0 and kept[i - 1].end > f.start) or (i < len(kept) and kept[i].start < f.end):
            continue
        kept.insert(i, f)
        starts.insert(i, f.start)
    return kept


# Context, as presidio's LemmaContextAwareEnhancer scores it: a context word among the 5 words before a
# match (stop words and punctuation not counted) adds 0.35, to at least 0.4.
_CONTEXT_WINDOW = 5
_CONTEXT_BOOST = 0.35
_CONTEXT_FLOOR = 0.4
_WORD = regex.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


def _lemma(word: str) -> str:
    """Lowercase, possessive and plural `s` dropped: all the lemmatising context words need."""
    w = word.lower()
    if w.endswith(("'s", "\u2019s")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


class _Engine:
    """presidio's recognizers plus context scoring, built once per process and shared by every scanner.

    presidio's AnalyzerEngine.analyze is not used: with these recognizers it took ~9 ms of CPU for a
    200-word text against ~4 ms here. Per call it runs every selected recognizer, loops recognizers x
    results and deep-copies each result; it also needs an NlpEngine, and spacy.blank("en") would add every
    new word it sees to a vocabulary that never shrinks. Here words come from one regex, and a recognizer
    that cannot reach the threshold without context is skipped when none of its context words is in the text.
    """

    def __init__(self, recognizers: list[tuple[EntityRecognizer, bool]], stop_words: Iterable[str]) -> None:
        self.stop_words = frozenset(stop_words)
        self.recognizers = [(rec, frozenset(w.lower() for w in rec.context or ()), gated) for rec, gated in recognizers]
        self._context = {rec.id: context for rec, context, _ in self.recognizers}
        self._selections: dict[tuple[str, ...], list[tuple[EntityRecognizer, frozenset[str], bool]]] = {}

    def analyze(self, text: str, entities: tuple[str, ...]) -> list[_Candidate]:
        selected = self._selections.get(entities)
        if selected is None:
            wanted = set(entities)
            selected = [r for r in self.recognizers if wanted.intersection(r[0].supported_entities)]
            self._selections[entities] = selected
        starts, keywords = self._keywords(text)
        present = set(keywords)
        candidates = []
        for rec, context, gated in selected:
            if gated and context.isdisjoint(present):
                continue
            # None of these recognizers reads NLP artifacts (presidio types the argument as required).
            for r in rec.analyze(text, rec.supported_entities, None):  # type: ignore[arg-type]
                distance = _context_distance(r.start, starts, keywords, context) if context else _FAR
                score = r.score
                if distance <= _CONTEXT_WINDOW:
                    score = min(1.0, max(score + _CONTEXT_BOOST, _CONTEXT_FLOOR))
                if score >= SCORE_THRESHOLD:
                    finding = Finding(r.entity_type, text[r.start : r.end], r.start, r.end)
                    candidates.append(_Candidate(finding, score, distance, _RANK[r.entity_type]))
        return candidates

    def _keywords(self, text: str) -> tuple[list[int], list[str]]:
        """Word start offsets and, for each word, its lemma, or "" for stop words and punctuation."""
        starts: list[int] = []
        keywords: list[str] = []
        for m in _WORD.finditer(text):
            word = m.group()
            starts.append(m.start())
            lemma = _lemma(word)
            keywords.append("" if lemma in self.stop_words or not word[0].isalnum() else lemma)
        return starts, keywords


def _context_distance(start: int, starts: list[int], keywords: list[str], context: frozenset[str]) -> int:
    """How many keywords back from the word at `start` a context word is (0: that word itself); _FAR if none."""
    i = bisect.bisect_right(starts, start) - 1
    distance = 0
    while i >= 0 and distance <= _CONTEXT_WINDOW:
        if keywords[i]:
            if keywords[i] in context:
                return distance
            distance += 1
        i -= 1
    return _FAR


_engine_lock = threading.Lock()
_engine_instance: _Engine | None = None


def _engine() -> _Engine:
    global _engine_instance
    if _engine_instance is None:
        with _engine_lock:
            if _engine_instance is None:
                from spacy.lang.en.stop_words import STOP_WORDS  # presidio imports spaCy anyway

                engine = _Engine(_recognizers(), STOP_WORDS)
                # Compile every pattern, load phone metadata and the suffix list now, not in a request.
                engine.analyze("warm up: a@example.com, 020 7946 0958 or +1 206 555 0142", tuple(sorted(SUPPORTED)))
                _engine_instance = engine
    return _engine_instance


def _recognizers() -> list[tuple[EntityRecognizer, bool]]:
    """Every recognizer, and whether it needs context to reach the threshold (then it is gated on it)."""
    import phonenumbers
    import tldextract
    from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
    from presidio_analyzer import predefined_recognizers as pr

    case_sensitive = regex.DOTALL | regex.MULTILINE
    ignore_case = case_sensitive | regex.IGNORECASE

    class OwnRecognizer(PatternRecognizer):
        def __init__(self, spec: Spec) -> None:
            super().__init__(
                supported_entity=spec.type,
                name=f"outcrop_{spec.type.lower()}",
                patterns=[Pattern(f"{spec.type} {i}", rx, score) for i, (rx, score) in enumerate(spec.patterns)],
                context=list(spec.context),
                global_regex_flags=case_sensitive if spec.case_sensitive else ignore_case,
            )
            self._certify = spec.certify
            self._reject = spec.reject
            self._requires = spec.requires

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
        ) -> list[RecognizerResult]:
            if self._requires:
                lowered = text.lower()
                if not any(word in lowered for word in self._requires):
                    return []
            return super().analyze(text, entities, nlp_artifacts, regex_flags)

        def validate_result(self, pattern_text: str) -> bool | None:
            return True if self._certify and self._certify(pattern_text) else None

        def invalidate_result(self, pattern_text: str) -> bool:
            return bool(self._reject and self._reject(pattern_text))

    # tldextract.extract() would fetch the public suffix list over the network on first use.
    offline_tlds = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class Email(pr.EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_tlds(pattern_text).fqdn != ""

    def digits(text: str) -> list[int]:
        return [int(c) for c in text if c.isdigit()]

    # Routing and NHS checksums pass for ~1 number in 10, as do UK plate age codes for many letter-digit
    # runs: a failed check drops a match, a passed one no longer makes it certain (presidio scores it
    # 1.0); context must still confirm it.
    class AbaRouting(pr.AbaRoutingRecognizer):
        def validate_result(self, pattern_text: str) -> None:  # type: ignore[override]  # keep the score
            return None

        def invalidate_result(self, pattern_text: str) -> bool:
            return sum(x * w for x, w in zip(digits(pattern_text), (3, 7, 1, 3, 7, 1, 3, 7, 1), strict=True)) % 10 != 0

    class Nhs(pr.NhsRecognizer):
        def validate_result(self, pattern_text: str) -> None:  # type: ignore[override]  # keep the score
            return None

        def invalidate_result(self, pattern_text: str) -> bool:
            return sum(x * w for x, w in zip(digits(pattern_text), range(10, 0, -1), strict=True)) % 11 != 0

    class UkPlate(pr.UkVehicleRegistrationRecognizer):
        def validate_result(self, pattern_text: str) -> None:
            return None

        def invalidate_result(self, pattern_text: str) -> bool:  # a current-format plate with a bad age code
            return super().validate_result(pattern_text) is False

    class Phone(pr.PhoneRecognizer):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
            runs = list(PHONE_DIGITS.finditer(text))
            if not runs:
                return []
            # libphonenumber tries to parse every number it sees (dates, prices...): show it only the
            # runs of 7+ digits and their surroundings, at their offsets.
            view = [" "] * len(text)
            for m in runs:
                a, b = max(0, m.start() - 12), min(len(text), m.end() + 12)
                view[a:b] = text[a:b]
            shown = "".join(view)
            regions = ("US", *PHONE_TRUNK_REGIONS) if PHONE_TRUNK.search(text) else ("US",)
            results = [
                self._get_recognizer_result(match, text, region, nlp_artifacts)
                for region in regions
                for match in phonenumbers.PhoneNumberMatcher(shown, region, leniency=phonenumbers.Leniency.VALID)
            ]
            return EntityRecognizer.remove_duplicates(results)

    class Url(pr.UrlRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:  # file names: setup.py, README.md
            plain = "/" not in pattern_text and not pattern_text.lower().startswith("www")
            return plain and pattern_text.rsplit(".", 1)[-1].lower() in FILE_SUFFIXES

    base = pr.UrlRecognizer.BASE_URL_REGEX.replace(
        "(?:/[^\\s()<>\\\"']*)?)", "(?:/[^\\s()<>\\\"']*[^\\s()<>\\\"'.,;:!?])?)"
    )  # a path does not take the sentence's final punctuation
    url_patterns = [
        Pattern("Standard Url", r"(?i)(?<![\w@.-])https?://" + base + r"(?![\w-])", 0.6),
        Pattern("Non schema URL", r"(?i)(?<![\w@.:/-])" + base + r"(?![\w@-])", 0.5),
    ]
    weak_nhs = [Pattern("NHS (weak)", p.regex, 0.1) for p in pr.NhsRecognizer.PATTERNS]

    def ctx(entity: str) -> list[str]:
        return CONTEXT[entity]

    def own_copy(patterns: list[Pattern]) -> list[Pattern]:  # a Pattern caches its regex, compiled with our flags
        return [Pattern(p.name, p.regex, p.score) for p in patterns]

    def exact_case(recognizer: PatternRecognizer) -> PatternRecognizer:  # "v2", "a4" are not licences
        recognizer.global_regex_flags = case_sensitive
        return recognizer

    ungated: list[EntityRecognizer] = [
        pr.CreditCardRecognizer(supported_entity="CREDIT_DEBIT_CARD_NUMBER", context=ctx("CREDIT_DEBIT_CARD_NUMBER")),
        Email(supported_entity="EMAIL", context=ctx("EMAIL")),
        pr.IbanRecognizer(
            supported_entity="INTERNATIONAL_BANK_ACCOUNT_NUMBER", context=ctx("INTERNATIONAL_BANK_ACCOUNT_NUMBER")
        ),
        pr.IpRecognizer(supported_entity="IP_ADDRESS", context=ctx("IP_ADDRESS")),
        pr.MacAddressRecognizer(supported_entity="MAC_ADDRESS", context=ctx("MAC_ADDRESS")),
        Phone(supported_entity="PHONE", context=ctx("PHONE")),
        Url(supported_entity="URL", context=ctx("URL"), patterns=url_patterns),
        pr.UsSsnRecognizer(supported_entity="US_SOCIAL_SECURITY_NUMBER", context=ctx("US_SOCIAL_SECURITY_NUMBER")),
        pr.UsItinRecognizer(
            supported_entity="US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
            context=ctx("US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER"),
        ),
        pr.UkDrivingLicenceRecognizer(supported_entity="DRIVER_ID", context=ctx("DRIVER_ID")),
        pr.UkNinoRecognizer(
            supported_entity="UK_NATIONAL_INSURANCE_NUMBER", context=ctx("UK_NATIONAL_INSURANCE_NUMBER")
        ),
        pr.CaSinRecognizer(supported_entity="CA_SOCIAL_INSURANCE_NUMBER", context=ctx("CA_SOCIAL_INSURANCE_NUMBER")),
    ]
    gated: list[EntityRecognizer] = [  # every pattern scores under the threshold, nothing validates to 1.0
        pr.UsPassportRecognizer(supported_entity="US_PASSPORT_NUMBER", context=ctx("US_PASSPORT_NUMBER")),
        pr.UsBankRecognizer(supported_entity="US_BANK_ACCOUNT_NUMBER", context=ctx("US_BANK_ACCOUNT_NUMBER")),
        AbaRouting(supported_entity="US_BANK_ROUTING_NUMBER", context=ctx("US_BANK_ROUTING_NUMBER")),
        exact_case(
            pr.UsLicenseRecognizer(
                supported_entity="DRIVER_ID",
                context=ctx("DRIVER_ID"),
                patterns=own_copy(pr.UsLicenseRecognizer.PATTERNS),
            )
        ),
        Nhs(
            supported_entity="UK_NATIONAL_HEALTH_SERVICE_NUMBER",
            context=ctx("UK_NATIONAL_HEALTH_SERVICE_NUMBER"),
            patterns=weak_nhs,
        ),
        exact_case(
            UkPlate(supported_entity="LICENSE_PLATE", context=ctx("LICENSE_PLATE"), patterns=own_copy(UkPlate.PATTERNS))
        ),
        exact_case(
            pr.UkPostcodeRecognizer(
                supported_entity="ADDRESS", context=ctx("ADDRESS"), patterns=own_copy(pr.UkPostcodeRecognizer.PATTERNS)
            )
        ),
        pr.CaPostalCodeRecognizer(supported_entity="ADDRESS", context=ctx("ADDRESS")),
    ]
    own: list[tuple[EntityRecognizer, bool]] = [
        (OwnRecognizer(spec), spec.certify is None and max(score for _, score in spec.patterns) < SCORE_THRESHOLD)
        for spec in SPECS
    ]
    return [(r, False) for r in ungated] + [(r, True) for r in gated] + own
