"""Our own PII patterns for the types presidio has no recognizer for, and the context words and phone
settings we give presidio's own recognizers (how each type is found: outcrop/guardrails/pii.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import regex


@dataclass(frozen=True)
class Spec:
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

SPECS: tuple[Spec, ...] = (
    Spec(
        "AWS_ACCESS_KEY",
        ((r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", 0.9),),
        case_sensitive=True,
        requires=("a3t", "akia", "asia", "abia", "acca"),
    ),
    Spec(
        "AWS_SECRET_KEY",
        ((r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", 0.45),),
        context=("secret", "aws_secret_access_key", "secretaccesskey", "secret_key", "key"),
        case_sensitive=True,
        reject=_not_mixed_case_and_digit,
    ),
    Spec(
        "CA_HEALTH_NUMBER",
        ((r"\b\d{4}[- ]?\d{3}[- ]?\d{3}(?:[- ]?[A-Z]{2})?\b", 0.1), (r"\b[A-Z]{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3)),
        context=("health", "healthcare", "ohip", "ramq", "hcn", "msp", "medicare", "phn"),
        case_sensitive=True,
    ),
    Spec(
        "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER",
        ((r"\b\d{5} ?\d{5}\b", 0.05), (r"\b\d{10}K\b", 0.3)),
        context=("utr", "taxpayer", "tax", "hmrc", "assessment"),
    ),
    Spec(
        "CREDIT_DEBIT_CARD_CVV",
        ((r"\b" + _CARD_KEYS + _LABEL_GAP + r"\K\d{3,4}\b", 0.85),),
        requires=("cv", "cs", "cid", "security code", "verification"),
    ),
    Spec(
        "CREDIT_DEBIT_CARD_EXPIRY",
        (
            (r"(?<![\d/-]|\d\.)(?:0?[1-9]|1[0-2]) ?[/-] ?(?:\d{2}|20\d{2})(?![\d/-]|\.\d)", 0.15),
            (r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? +20\d{2}\b", 0.15),
        ),
        context=("exp", "expiry", "expiration", "expire", "expiring", "expdate", "valid", "thru", "good"),
    ),
    Spec(
        "CREDIT_DEBIT_CARD_NUMBER",  # "card ending in 1234"; full numbers are presidio's
        ((r"\bcard\b[^.\n]{0,30}?\b(?:ending|ends)[ \t]+(?:in|with)[ \t]+\K\d{4}\b", 0.6),),
        requires=("card",),
    ),
    Spec(
        "PIN",
        ((r"\b(?:pin|pin code|pin number|passcode)" + _LABEL_GAP + r"\K\d{4,8}\b", 0.8),),
        requires=("pin", "passcode"),
    ),
    Spec(
        "PASSWORD",
        ((_PW + _ASSIGN + r"\K" + _VALUE, 0.85), (_PW + _IS + r"\K" + _NOT_A_VALUE + _VALUE, 0.7)),
        case_sensitive=True,
        requires=("pass", "pwd"),
    ),
    Spec(
        "USERNAME",
        (
            (_USER + _ASSIGN + r"\K@?[\w.-]{0,62}\w", 0.85),
            (_USER + _IS + r"\K" + _NOT_A_VALUE + r"@?[\w.-]{0,62}\w", 0.7),
        ),
        case_sensitive=True,
        requires=("user", "login", "name", "handle"),
    ),
    Spec(
        "USERNAME",  # @handles: decorators and mentions look the same without a social-media word
        ((r"(?<![\w.@])@\w{2,30}\b", 0.3),),
        context=("twitter", "instagram", "tiktok", "github", "handle", "follow", "dm", "username", "user", "mention"),
    ),
    Spec(
        "SWIFT_CODE",  # all letters, like many words in capitals: only next to "SWIFT", "BIC"...
        ((r"\b[A-Z]{6}[A-Z2-9][A-NP-Z0-9](?:[A-Z]{3})?\b", 0.3),),
        context=("swift", "bic", "bank", "branch"),
        case_sensitive=True,
        reject=_not_a_country,
    ),
    Spec(
        "SWIFT_CODE",  # a digit in the location or branch code
        ((r"\b[A-Z]{6}(?=\w{0,4}\d)[A-Z0-9]{2}(?:[A-Z0-9]{3})?\b", 0.5),),
        context=("swift", "bic", "bank", "branch"),
        case_sensitive=True,
        reject=_not_a_country,
    ),
    Spec(
        "VEHICLE_IDENTIFICATION_NUMBER",
        ((r"\b(?=[A-HJ-NPR-Z0-9]{0,16}\d)(?=[A-HJ-NPR-Z0-9]{0,16}[A-HJ-NPR-Z])[A-HJ-NPR-Z0-9]{17}\b", 0.3),),
        context=("vin", "vehicle", "chassis", "car", "identification"),
        case_sensitive=True,
        certify=_vin_check_digit,
    ),
    Spec(
        "AGE",
        (
            (r"\b\d{1,3}[ -]?(?:years?|yrs?|months?|weeks?)(?=[ -](?:old|of age)\b)", 0.85),
            (r"\b\d{1,3} ?(?:y/o|yo)\b", 0.6),
            (r"\b(?:age|aged|ages)\b[ \t]*(?:is|of|:|=)?[ \t]*\K\d{1,3}\b(?![ \t]*(?:%|percent))", 0.7),
            (r"\b(?:i am|i'm|he is|she is|he's|she's)[ \t]+\K\d{1,3}(?=[ \t]*(?:[.,;!?]|$|and\b))", 0.6),
        ),
        reject=_implausible_age,
    ),
    Spec(
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
    Spec(
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
    Spec(
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
CONTEXT: dict[str, list[str]] = {
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
PHONE_DIGITS = regex.compile(r"\d(?:[ \t().\-/]{0,3}\d){6,}")
PHONE_TRUNK = regex.compile(r"(?<![\d+])0\d(?:[ \t().\-/]{0,3}\d){8,}")  # 0 + 9 or more digits
PHONE_TRUNK_REGIONS = ("GB", "DE", "FR", "IN", "AU")
FILE_SUFFIXES = frozenset({"py", "md", "sh", "rs", "pl", "pm", "so", "cc", "mk", "ps", "ml"})  # also TLDs
