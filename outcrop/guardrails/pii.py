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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import regex

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


# --- our own recognizers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """A pattern recognizer for one Bedrock type: `certify(match)` raises its score to 1.0, `reject(match)` drops it."""

    type: str
    patterns: tuple[tuple[str, float], ...]
    context: tuple[str, ...] = ()
    case_sensitive: bool = False
    certify: Callable[[str], bool] | None = None
    reject: Callable[[str], bool] | None = None
    requires: tuple[str, ...] = ()  # lowercase; without one of these in the text no pattern can match


_VIN_VALUES = dict(
    zip("ABCDEFGHJKLMNPRSTUVWXYZ", [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9], strict=True)
)
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def _vin_check_digit(vin: str) -> bool:
    total = sum((int(c) if c.isdigit() else _VIN_VALUES[c]) * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    return "0123456789X"[total % 11] == vin[8]


def _not_a_country(code: str) -> bool:
    import phonenumbers  # a presidio dependency; its region list is ISO 3166 alpha-2

    return code[4:6] not in phonenumbers.SUPPORTED_REGIONS and code[4:6] != "XK"


def _not_mixed_case_and_digit(text: str) -> bool:
    return not (any(c.islower() for c in text) and any(c.isupper() for c in text) and any(c.isdigit() for c in text))


def _implausible_age(text: str) -> bool:
    digits = regex.match(r"\d+", text)
    return not digits or int(digits.group()) > 130


# Words that follow "password is" / "username is" without being one.
_NOT_A_VALUE = (
    r"(?!(?i:a|an|the|my|your|his|her|our|their|its|this|that|not|no|too|also|still|now|just|very|case|"
    r"required|optional|invalid|incorrect|correct|wrong|right|empty|blank|missing|expired|taken|available|"
    r"unique|same|different|changed|reset|set|shown|hidden|stored|saved|sent|needed|used|weak|strong|"
    r"secure|insecure|long|short|sensitive|mandatory|forgotten|known|unknown|visible|encrypted|ok|okay|"
    r"fine|good|bad|what|where|which|how|why|when|being|going|displayed|generated|valid|locked)\b)"
)
_QUOTES = "\"'`\u2018\u2019\u201c\u201d"
_VALUE = r"[^\s" + _QUOTES + r"]{3,63}[^\s" + _QUOTES + r".,;:!?)\]]"
_PW = r"\b(?i:password|passwd|passphrase|pass phrase|pwd)"
_USER = r"\b(?i:user ?name|user ?id|login(?: name| id)?|screen ?name|nick ?name|account name|handle)"
_IS = r"\s+(?i:is|was|is now|was set to|set to|changed to|reset to)\s+[" + _QUOTES + "]?"
_ASSIGN = r"\s*[:=]\s*[" + _QUOTES + "]?"
_CARD_KEYS = r"(?:cvv2?|cvc2?|cvn|csc|cid|security code|card verification (?:value|code|number))"
_LABEL_GAP = r"\W{0,3}(?:(?:is|was|code|number|no\.?)\W{1,3}){0,2}"

# Names: capitalised words (O'Brien, McDonald, Smith-Jones, José) and an optional middle initial.
_NAME_STOP = (
    r"(?!(?:The|This|That|These|Those|My|Your|Our|His|Her|And|But|Or|Is|Was|Not|Here|There|Street|St|"
    r"Avenue|Ave|Road|Rd|Lane|Drive|Address|Phone|Email|Date|Age|Team|All|Everyone|World|Sir|Madam|Customer|"
    r"Support|Thanks|Thank|Regards|Please|Hi|Hello|Dear)\b)"
)
_NAME_WORD = _NAME_STOP + r"(?:Mc|Mac|O['\u2019])?\p{Lu}\p{Ll}+(?:-\p{Lu}\p{Ll}+)?"
_NAME = _NAME_WORD + r"(?:[ \t]+(?:\p{Lu}\.[ \t]+)?" + _NAME_WORD + r"){0,2}"
_TITLE = r"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Professor|Sir|Dame|Rev|Capt|Sgt|Lt|Col|Hon)\.?[ \t]+"
_NAME_CUE = (
    r"\b(?i:my name is|my name's|name is|named|call me|i am called|i'm called|signed)[ \t]+"
    r"|\b(?i:name|full name|first name|last name|surname|given name|patient|customer name|employee|applicant|"
    r"contact person|account holder|cardholder|attn|attention)[ \t]*[:=][ \t]*"
)

# Addresses
_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|"
    r"Terrace|Ter|Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Trl|Close|Crescent|Cres|Row|Alley|Plaza|"
    r"Gardens|Grove|Mews|Walk|Hill|Pike|Loop|Crossing|Expressway|Expy|Freeway|Fwy|Turnpike)"
)
_STATES = (
    r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|"
    r"NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)"
)
_DIR = r"(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?[ \t]+)?"
_PLACE_WORD = (
    r"(?!(?:And|But|Or|Then|The|This|That|Which|Where|I|We|He|She|They|It|My|Our|Please|Thanks|Call|Email|"
    r"Phone|Ship|Send|See)\b)\p{Lu}[\p{L}'-]*(?!\w)"
)
_STREET = (
    r"\b\d{1,6}(?:-\d{1,4})?[A-Za-z]?[ \t]+" + _DIR + r"(?:(?:\p{Lu}[\p{L}'-]*|\d{1,3}(?:st|nd|rd|th))[ \t]+){1,4}"
    r"(?i:" + _SUFFIX + r")\b\.?(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?"
    r"(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|#)\.?[ \t]*#?[ \t]*[A-Za-z0-9-]+)?"
    r"(?:,[ \t]*" + _PLACE_WORD + r"(?:[ \t]" + _PLACE_WORD + r"){0,2})?"
    r"(?:,?[ \t]*" + _STATES + r"[ \t]+\d{5}(?:-\d{4})?\b)?"
    r"(?:,?[ \t]*[A-Z]{1,2}\d[A-Z\d]?[ \t]*\d[A-Z]{2}\b)?"
    r"(?:,[ \t]*(?:USA|U\.S\.A\.|US|United States|UK|United Kingdom|Canada)\b)?"
)

_SPECS: tuple[_Spec, ...] = (
    _Spec(
        "AWS_ACCESS_KEY",
        ((r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", 0.9),),
        case_sensitive=True,
        requires=("a3t", "akia", "asia", "abia", "acca"),
    ),
    _Spec(
        "AWS_SECRET_KEY",
        ((r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", 0.45),),
        context=("secret", "aws_secret_access_key", "secretaccesskey", "secret_key", "key"),
        case_sensitive=True,
        reject=_not_mixed_case_and_digit,
    ),
    _Spec(
        "CA_HEALTH_NUMBER",
        ((r"\b\d{4}[- ]?\d{3}[- ]?\d{3}(?:[- ]?[A-Z]{2})?\b", 0.1), (r"\b[A-Z]{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3)),
        context=("health", "healthcare", "ohip", "ramq", "hcn", "msp", "medicare", "phn"),
        case_sensitive=True,
    ),
    _Spec(
        "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER",
        ((r"\b\d{5} ?\d{5}\b", 0.05), (r"\b\d{10}K\b", 0.3)),
        context=("utr", "taxpayer", "tax", "hmrc", "assessment"),
    ),
    _Spec(
        "CREDIT_DEBIT_CARD_CVV",
        ((r"\b" + _CARD_KEYS + _LABEL_GAP + r"\K\d{3,4}\b", 0.85),),
        requires=("cv", "cs", "cid", "security code", "verification"),
    ),
    _Spec(
        "CREDIT_DEBIT_CARD_EXPIRY",
        (
            (r"(?<![\d/-]|\d\.)(?:0?[1-9]|1[0-2]) ?[/-] ?(?:\d{2}|20\d{2})(?![\d/-]|\.\d)", 0.15),
            (r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? +20\d{2}\b", 0.15),
        ),
        context=("exp", "expiry", "expiration", "expire", "expiring", "expdate", "valid", "thru", "good"),
    ),
    _Spec(
        "CREDIT_DEBIT_CARD_NUMBER",  # "card ending in 1234"; full numbers are presidio's
        ((r"\bcard\b[^.\n]{0,30}?\b(?:ending|ends)[ \t]+(?:in|with)[ \t]+\K\d{4}\b", 0.6),),
        requires=("card",),
    ),
    _Spec(
        "PIN",
        ((r"\b(?:pin|pin code|pin number|passcode)" + _LABEL_GAP + r"\K\d{4,8}\b", 0.8),),
        requires=("pin", "passcode"),
    ),
    _Spec(
        "PASSWORD",
        ((_PW + _ASSIGN + r"\K" + _VALUE, 0.85), (_PW + _IS + r"\K" + _NOT_A_VALUE + _VALUE, 0.7)),
        case_sensitive=True,
        requires=("pass", "pwd"),
    ),
    _Spec(
        "USERNAME",
        (
            (_USER + _ASSIGN + r"\K@?[\w.-]{0,62}\w", 0.85),
            (_USER + _IS + r"\K" + _NOT_A_VALUE + r"@?[\w.-]{0,62}\w", 0.7),
        ),
        case_sensitive=True,
        requires=("user", "login", "name", "handle"),
    ),
    _Spec(
        "USERNAME",  # @handles: decorators and mentions look the same without a social-media word
        ((r"(?<![\w.@])@\w{2,30}\b", 0.3),),
        context=("twitter", "instagram", "tiktok", "github", "handle", "follow", "dm", "username", "user", "mention"),
    ),
    _Spec(
        "SWIFT_CODE",  # all letters, like many words in capitals: only next to "SWIFT", "BIC"...
        ((r"\b[A-Z]{6}[A-Z2-9][A-NP-Z0-9](?:[A-Z]{3})?\b", 0.3),),
        context=("swift", "bic", "bank", "branch"),
        case_sensitive=True,
        reject=_not_a_country,
    ),
    _Spec(
        "SWIFT_CODE",  # a digit in the location or branch code
        ((r"\b[A-Z]{6}(?=\w{0,4}\d)[A-Z0-9]{2}(?:[A-Z0-9]{3})?\b", 0.5),),
        context=("swift", "bic", "bank", "branch"),
        case_sensitive=True,
        reject=_not_a_country,
    ),
    _Spec(
        "VEHICLE_IDENTIFICATION_NUMBER",
        ((r"\b(?=[A-HJ-NPR-Z0-9]{0,16}\d)(?=[A-HJ-NPR-Z0-9]{0,16}[A-HJ-NPR-Z])[A-HJ-NPR-Z0-9]{17}\b", 0.3),),
        context=("vin", "vehicle", "chassis", "car", "identification"),
        case_sensitive=True,
        certify=_vin_check_digit,
    ),
    _Spec(
        "AGE",
        (
            (r"\b\d{1,3}[ -]?(?:years?|yrs?|months?|weeks?)(?=[ -](?:old|of age)\b)", 0.85),
            (r"\b\d{1,3} ?(?:y/o|yo)\b", 0.6),
            (r"\b(?:age|aged|ages)\b[ \t]*(?:is|of|:|=)?[ \t]*\K\d{1,3}\b(?![ \t]*(?:%|percent))", 0.7),
            (r"\b(?:i am|i'm|he is|she is|he's|she's)[ \t]+\K\d{1,3}(?=[ \t]*(?:[.,;!?]|$|and\b))", 0.6),
        ),
        reject=_implausible_age,
    ),
    _Spec(
        "NAME",
        (
            (_TITLE + r"\K" + _NAME, 0.85),
            (r"(?:" + _NAME_CUE + r")\K" + _NAME, 0.8),
            (r"\b(?i:dear|hi|hello|hey)[ \t]+\K" + _NAME + r"(?=[ \t]*[,!:\n])", 0.6),
            (r"\b(?i:i am|i'm)[ \t]+\K" + _NAME_WORD + r"[ \t]+" + _NAME_WORD + r"\b", 0.5),
            (
                r"\b(?i:regards|sincerely|cheers|best wishes|yours truly|thank you|thanks),?[ \t]*\n?[ \t]*\K"
                + _NAME
                + r"(?=[ \t]*$)",
                0.6,
            ),
        ),
        case_sensitive=True,
    ),
    _Spec(
        "ADDRESS",
        (
            (_STREET, 0.75),
            (r"\b\p{Lu}\p{Ll}+(?:[ \t]\p{Lu}\p{Ll}+)?,[ \t]*" + _STATES + r"[ \t]+\d{5}(?:-\d{4})?\b", 0.6),
            (r"\b(?i:p\.? ?o\.? ?box)[ \t]+\d{1,6}\b", 0.7),
            (
                r"\b(?:Suite|Ste|Apt|Apartment)\.?[ \t]*#?[ \t]*\d+[A-Za-z]?"
                r"(?:,[ \t]*(?:Building|Bldg|Floor)\.?[ \t]*#?\d+)?",
                0.45,
            ),
        ),
        case_sensitive=True,
    ),
    _Spec(
        "LICENSE_PLATE",
        (
            (
                r"\b(?i:plates?|plate number|plate no\.?|registration number|reg number|reg\.? no\.?)"
                r"\W{0,3}(?:(?i:is|was|reads|number|no\.?)\W{1,3}){0,2}\K"
                r"(?=[A-Z0-9 -]{0,9}\d)[A-Z0-9]{1,4}[ -]?[A-Z0-9]{1,4}\b",
                0.8,
            ),
        ),
        case_sensitive=True,
        requires=("plate", "reg"),
    ),
)

# Context words for presidio's predefined recognizers, replacing theirs (which, matched as whole words,
# are either too broad - "us", "number", "document" - or multi-word phrases that never match a word).
_CONTEXT: dict[str, list[str]] = {
    "CREDIT_DEBIT_CARD_NUMBER": ["credit", "card", "visa", "mastercard", "amex", "discover", "debit", "cc"],
    "EMAIL": ["email", "e-mail", "mail"],
    "IP_ADDRESS": ["ip", "ipv4", "ipv6", "address", "host", "server"],
    "MAC_ADDRESS": ["mac", "hardware", "ethernet", "nic", "wifi"],
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER": ["iban", "bank", "account"],
    "PHONE": ["phone", "telephone", "tel", "cell", "cellphone", "mobile", "call", "fax", "pager", "text", "whatsapp"],
    "URL": ["url", "website", "link", "site", "visit"],
    "US_SOCIAL_SECURITY_NUMBER": ["ssn", "social", "security"],
    "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER": ["itin", "taxpayer", "tin", "tax"],
    "US_PASSPORT_NUMBER": ["passport", "passport#", "travel"],
    "US_BANK_ACCOUNT_NUMBER": ["account", "acct", "checking", "savings", "bank", "deposit"],
    "US_BANK_ROUTING_NUMBER": ["routing", "aba", "rtn", "transit"],
    "DRIVER_ID": ["driver", "driving", "license", "licence", "dl", "dln", "permit", "dvla"],
    "UK_NATIONAL_HEALTH_SERVICE_NUMBER": ["nhs", "national"],
    "UK_NATIONAL_INSURANCE_NUMBER": ["national", "insurance", "nino", "ni"],
    "CA_SOCIAL_INSURANCE_NUMBER": ["sin", "insurance", "nas"],
    "LICENSE_PLATE": ["vehicle", "registration", "plate", "numberplate", "reg", "vrn", "dvla", "car"],
    "ADDRESS": ["address", "postcode", "postal", "zip", "delivery", "mailing", "shipping", "live", "ship"],
}
# libphonenumber finds "+<country> ..." numbers whatever the region; a region only adds its national format.
# US (and so Canada) always; the others, whose national numbers start with a trunk 0, when such a run exists.
_PHONE_DIGITS = regex.compile(r"\d(?:[ \t().\-/]{0,3}\d){6,}")
_PHONE_TRUNK = regex.compile(r"(?<![\d+])0\d(?:[ \t().\-/]{0,3}\d){8,}")  # 0 + 9 or more digits
_PHONE_TRUNK_REGIONS = ("GB", "DE", "FR", "IN", "AU")
_FILE_SUFFIXES = frozenset({"py", "md", "sh", "rs", "pl", "pm", "so", "cc", "mk", "ps", "ml"})  # also TLDs


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
        def __init__(self, spec: _Spec) -> None:
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
            runs = list(_PHONE_DIGITS.finditer(text))
            if not runs:
                return []
            # libphonenumber tries to parse every number it sees (dates, prices...): show it only the
            # runs of 7+ digits and their surroundings, at their offsets.
            view = [" "] * len(text)
            for m in runs:
                a, b = max(0, m.start() - 12), min(len(text), m.end() + 12)
                view[a:b] = text[a:b]
            shown = "".join(view)
            regions = ("US", *_PHONE_TRUNK_REGIONS) if _PHONE_TRUNK.search(text) else ("US",)
            results = [
                self._get_recognizer_result(match, text, region, nlp_artifacts)
                for region in regions
                for match in phonenumbers.PhoneNumberMatcher(shown, region, leniency=phonenumbers.Leniency.VALID)
            ]
            return EntityRecognizer.remove_duplicates(results)

    class Url(pr.UrlRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:  # file names: setup.py, README.md
            plain = "/" not in pattern_text and not pattern_text.lower().startswith("www")
            return plain and pattern_text.rsplit(".", 1)[-1].lower() in _FILE_SUFFIXES

    base = pr.UrlRecognizer.BASE_URL_REGEX.replace(
        "(?:/[^\\s()<>\\\"']*)?)", "(?:/[^\\s()<>\\\"']*[^\\s()<>\\\"'.,;:!?])?)"
    )  # a path does not take the sentence's final punctuation
    url_patterns = [
        Pattern("Standard Url", r"(?i)(?<![\w@.-])https?://" + base + r"(?![\w-])", 0.6),
        Pattern("Non schema URL", r"(?i)(?<![\w@.:/-])" + base + r"(?![\w@-])", 0.5),
    ]
    weak_nhs = [Pattern("NHS (weak)", p.regex, 0.1) for p in pr.NhsRecognizer.PATTERNS]

    def ctx(entity: str) -> list[str]:
        return _CONTEXT[entity]

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
        for spec in _SPECS
    ]
    return [(r, False) for r in ungated] + [(r, True) for r in gated] + own
