"""PII detection and masking (outcrop.guardrails.pii): every Bedrock type, checksums, context, overlaps, masking."""

from __future__ import annotations

import itertools
import socket
import threading
from typing import Any

import botocore.session
import pytest

from outcrop.guardrails import pii
from outcrop.guardrails.pii import SUPPORTED, Finding, PiiScanner, mask

ALL = PiiScanner(SUPPORTED)

# (Bedrock type, sentence, the text Bedrock would mask). Numbers with checksums are valid ones.
FOUND = [
    ("ADDRESS", "I live at 100 Main Street, Anytown, USA.", "100 Main Street, Anytown, USA"),
    ("ADDRESS", "Ship it to 1 Infinite Loop, Cupertino, CA 95014 by Friday.", "1 Infinite Loop, Cupertino, CA 95014"),
    ("ADDRESS", "Our office is at 221B Baker Street, London NW1 6XE.", "221B Baker Street, London NW1 6XE"),
    ("ADDRESS", "Mail the forms to PO Box 123.", "PO Box 123"),
    ("ADDRESS", "Deliver to Suite #12, Building 123 at the back.", "Suite #12, Building 123"),
    ("AGE", "I am 40 years old.", "40 years"),
    ("AGE", "The patient, aged 67, was admitted overnight.", "67"),
    ("AGE", "Our 3-month-old puppy sleeps a lot.", "3-month"),
    ("AWS_ACCESS_KEY", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("AWS_SECRET_KEY", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("CA_HEALTH_NUMBER", "My OHIP health card number is 1234-567-890.", "1234-567-890"),
    ("CA_HEALTH_NUMBER", "RAMQ number ABCD 1234 5678", "ABCD 1234 5678"),
    ("CA_SOCIAL_INSURANCE_NUMBER", "My social insurance number is 130 692 544.", "130 692 544"),
    ("CREDIT_DEBIT_CARD_CVV", "The CVV is 123.", "123"),
    ("CREDIT_DEBIT_CARD_CVV", "security code: 4321", "4321"),
    ("CREDIT_DEBIT_CARD_EXPIRY", "The card expires 03/27.", "03/27"),
    ("CREDIT_DEBIT_CARD_EXPIRY", "Expiry date: Jan 2027", "Jan 2027"),
    ("CREDIT_DEBIT_CARD_NUMBER", "Charge my Visa 4111 1111 1111 1111 today.", "4111 1111 1111 1111"),
    ("CREDIT_DEBIT_CARD_NUMBER", "Amex 3782-822463-10005 was declined.", "3782-822463-10005"),
    ("CREDIT_DEBIT_CARD_NUMBER", "Your card ending in 4242 was charged.", "4242"),
    ("DRIVER_ID", "My driver's license number is D1234567.", "D1234567"),
    ("EMAIL", "Contact marymajor@email.com for details.", "marymajor@email.com"),
    ("EMAIL", "EMAIL: JOHN.DOE@EXAMPLE.CO.UK", "JOHN.DOE@EXAMPLE.CO.UK"),
    ("INTERNATIONAL_BANK_ACCOUNT_NUMBER", "Pay to GB82 WEST 1234 5698 7654 32 please.", "GB82 WEST 1234 5698 7654 32"),
    ("INTERNATIONAL_BANK_ACCOUNT_NUMBER", "IBAN DE89370400440532013000", "DE89370400440532013000"),
    ("IP_ADDRESS", "The server is at 198.51.100.7.", "198.51.100.7"),
    ("IP_ADDRESS", "Ping 2001:db8::ff00:42:8329 now", "2001:db8::ff00:42:8329"),
    ("LICENSE_PLATE", "The car's license plate is 7ABC123.", "7ABC123"),
    ("LICENSE_PLATE", "The vehicle registration is AB51 ABC.", "AB51 ABC"),
    ("MAC_ADDRESS", "Its MAC address is 00:1A:2B:3C:4D:5E.", "00:1A:2B:3C:4D:5E"),
    ("NAME", "Dr. Jane Smith will see you now.", "Jane Smith"),
    ("NAME", "My name is John O'Brien.", "John O'Brien"),
    ("NAME", "Name: Zoë Ångström-Lee", "Zoë Ångström-Lee"),
    ("NAME", "Best regards,\nMaria Garcia", "Maria Garcia"),
    ("PASSWORD", "My password is very20special#pass", "very20special#pass"),
    ("PASSWORD", "password: hunter2!", "hunter2"),
    ("PHONE", "Call me at (206) 555-0142 tomorrow.", "(206) 555-0142"),
    ("PHONE", "Ring +44 20 7946 0958 after six.", "+44 20 7946 0958"),
    ("PHONE", "Our London desk is 020 7946 0958.", "020 7946 0958"),
    ("PIN", "My PIN is 4821.", "4821"),
    ("SWIFT_CODE", "The SWIFT code is DEUTDEFF500.", "DEUTDEFF500"),
    ("SWIFT_CODE", "Bank BIC: DEUTDEFF", "DEUTDEFF"),
    ("UK_NATIONAL_HEALTH_SERVICE_NUMBER", "My NHS number is 943 476 5919.", "943 476 5919"),
    ("UK_NATIONAL_INSURANCE_NUMBER", "National Insurance number: AB 12 34 56 C", "AB 12 34 56 C"),
    ("UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER", "My UTR is 12345 67890.", "12345 67890"),
    ("URL", "Read the docs at https://www.example.com/docs.", "https://www.example.com/docs"),
    ("URL", "Visit www.example.com today", "www.example.com"),
    ("USERNAME", "My username is jdoe_42.", "jdoe_42"),
    ("USERNAME", "Follow me on Twitter @jane_doe", "@jane_doe"),
    ("US_BANK_ACCOUNT_NUMBER", "My checking account number is 12345678901.", "12345678901"),
    ("US_BANK_ROUTING_NUMBER", "The bank routing number is 021000021.", "021000021"),
    ("US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER", "My ITIN is 912-78-1234.", "912-78-1234"),
    ("US_PASSPORT_NUMBER", "My passport number is C12345678.", "C12345678"),
    ("US_SOCIAL_SECURITY_NUMBER", "My SSN is 536-22-8765.", "536-22-8765"),
    ("US_SOCIAL_SECURITY_NUMBER", "social security 536228765", "536228765"),
    ("VEHICLE_IDENTIFICATION_NUMBER", "VIN: 1M8GDM9AXKP042788", "1M8GDM9AXKP042788"),
    ("VEHICLE_IDENTIFICATION_NUMBER", "Stock unit 1HGCM82633A004352 arrived.", "1HGCM82633A004352"),  # check digit
]  # fmt: skip

# Numbers, dates, prices, code and capitalised words that are not PII, with every type enabled.
BENIGN = [
    "The meeting is on 2024-03-15 at 10:30, costs $1,299.99, and 3 of 42 people attended; order 123456789.",
    "Released in version 3.11.7 with setup.py and README.md; see section 4.2 on page 17.",
    "Revenue grew 12.5% to $4,500,000 in Q3 2023, up from 3,200,000 units in 2022.",
    "Use `pip install presidio-analyzer==2.2.366` and run python -m pytest tests/ -k pii.",
    "The function returns 404 when the ID 550e8400-e29b-41d4-a716-446655440000 is missing.",
    "Mix 2 cups of flour with 3 eggs and bake at 350 degrees for 25 minutes.",
    "The Apollo 11 mission landed on July 20, 1969, after a 4 day journey of 384,400 km.",
    "The train departs at 09:45 from platform 9 and arrives at 13:20; tickets cost 45.50 EUR.",
    "Set max_tokens to 2048, temperature to 0.7, and top_p to 0.9 for model v2 on GPU A100.",
    "Our office hours are Monday to Friday, 9 to 5, and we close on 12/25 and 01/01.",
    "The CUSTOMER asked about the BUSINESS DOCUMENT; it is IMPORTANT and REQUIRED by Monday.",
    "Decorate the class with @dataclass and use @property for computed fields.",
    "The commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f fixed issue 1234.",
    "The stock moved from 145.32 to 151.08, up 3.96 percent, on volume of 12,345,678 shares.",
    "Store it under /var/lib/outcrop/models with 0644 permissions and 2 GiB of space.",
    "The ratio is 16:9 and the resolution 1920x1080 at 60 Hz with 10 bit color.",
    "I am happy to help. This is New York. Hello World! Dear Sir, thanks.",
    "The password is incorrect. The username is required. Enter your PIN at the ATM.",
    "The year 2020 had 366 days and the war lasted 4 years and 3 months.",
    "Invoice 4111 1111 1111 1112 is not a card number because its checksum fails.",
]


def test_supported_is_exactly_bedrocks_pii_entity_enum() -> None:
    model = botocore.session.get_session().get_service_model("bedrock")
    assert set(model.shape_for("GuardrailPiiEntityType").enum) == SUPPORTED


def test_every_supported_type_has_a_detection_case() -> None:
    assert {kind for kind, _, _ in FOUND} == SUPPORTED


@pytest.mark.parametrize(("kind", "text", "expected"), FOUND)
def test_found_alone(kind: str, text: str, expected: str) -> None:
    findings = PiiScanner([kind]).scan(text)
    assert [(f.type, f.match) for f in findings] == [(kind, expected)]
    f = findings[0]
    assert text[f.start : f.end] == f.match and not f.regex


@pytest.mark.parametrize(("kind", "text", "expected"), FOUND)
def test_found_with_every_type_enabled(kind: str, text: str, expected: str) -> None:
    # The right type must win over every other type that could claim the same span.
    assert Finding(kind, expected, text.index(expected), text.index(expected) + len(expected)) in ALL.scan(text)


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_has_no_findings(text: str) -> None:
    assert ALL.scan(text) == []


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("CREDIT_DEBIT_CARD_NUMBER", "Charge my Visa 4111 1111 1111 1112 today."),  # Luhn fails
        ("INTERNATIONAL_BANK_ACCOUNT_NUMBER", "Pay to GB82 WEST 1234 5698 7654 33 please."),  # mod 97 fails
        ("CA_SOCIAL_INSURANCE_NUMBER", "My social insurance number is 130 692 545."),  # Luhn fails
        ("US_BANK_ROUTING_NUMBER", "The routing number is 021000022."),  # ABA checksum fails
        ("UK_NATIONAL_HEALTH_SERVICE_NUMBER", "My NHS number is 943 476 5918."),  # mod 11 fails
        ("US_SOCIAL_SECURITY_NUMBER", "My SSN is 666-12-3456."),  # never issued
        ("VEHICLE_IDENTIFICATION_NUMBER", "Stock unit 1HGCM82633A004353 arrived."),  # bad check digit, no context
    ],
)
def test_failed_checksums_are_not_findings(kind: str, text: str) -> None:
    assert PiiScanner([kind]).scan(text) == []


@pytest.mark.parametrize(
    ("kind", "without", "with_context"),
    [
        ("US_PASSPORT_NUMBER", "Order 912803456 shipped.", "My passport number is 912803456."),
        ("US_BANK_ACCOUNT_NUMBER", "Order 12345678 shipped.", "Bank account 12345678 is open."),
        ("US_BANK_ROUTING_NUMBER", "Order 021000021 shipped.", "ABA routing 021000021."),
        ("DRIVER_ID", "Part D1234567 is in stock.", "Driver license D1234567."),
        ("UK_NATIONAL_HEALTH_SERVICE_NUMBER", "Batch 9434765919 is ready.", "NHS 9434765919."),
        ("CREDIT_DEBIT_CARD_EXPIRY", "We close on 12/25.", "Card valid thru 12/25."),
        ("UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER", "Batch 1234567890 is ready.", "HMRC UTR 1234567890."),
    ],
)
def test_weak_patterns_need_context(kind: str, without: str, with_context: str) -> None:
    scanner = PiiScanner([kind])
    assert scanner.scan(without) == []
    assert [f.type for f in scanner.scan(with_context)] == [kind]


@pytest.mark.parametrize(
    ("entities", "text", "masked"),
    [
        (["AGE"], "I am 40 years old.", "I am {AGE} old."),
        (
            ["EMAIL", "US_SOCIAL_SECURITY_NUMBER"],
            "Email marymajor@email.com, SSN 536-22-8765.",
            "Email {EMAIL}, SSN {US_SOCIAL_SECURITY_NUMBER}.",
        ),
        (["NAME", "PHONE"], "Dr. Jane Smith: (206) 555-0142", "Dr. {NAME}: {PHONE}"),
        (["EMAIL"], "Call (206) 555-0142 or write jane@example.com", "Call (206) 555-0142 or write {EMAIL}"),
        (
            sorted(SUPPORTED),
            "Hi Sarah, ship the Visa 4111 1111 1111 1111 (CVV: 123, exp 03/27) to 100 Main Street, Anytown, USA.",
            "Hi {NAME}, ship the Visa {CREDIT_DEBIT_CARD_NUMBER} (CVV: {CREDIT_DEBIT_CARD_CVV}, "
            "exp {CREDIT_DEBIT_CARD_EXPIRY}) to {ADDRESS}.",
        ),
        (
            sorted(SUPPORTED),
            "My SSN is 536228765 and my passport is 912803456.",
            "My SSN is {US_SOCIAL_SECURITY_NUMBER} and my passport is {US_PASSPORT_NUMBER}.",
        ),
        (sorted(SUPPORTED), "Nothing to see here.", "Nothing to see here."),
    ],
)
def test_anonymize(entities: list[str], text: str, masked: str) -> None:
    assert mask(text, PiiScanner(entities).scan(text)) == masked


def test_custom_regex_is_masked_with_its_name() -> None:
    scanner = PiiScanner(["EMAIL"], [("ticket", r"TCK-\d{6}"), ("booking id", r"BK[0-9]{4}")])
    text = "Ticket TCK-123456 for BK0042, mail ops@example.com; TCK-12 is too short."
    findings = scanner.scan(text)
    assert findings == [
        Finding("ticket", "TCK-123456", 7, 17, regex=True),
        Finding("booking id", "BK0042", 22, 28, regex=True),
        Finding("EMAIL", "ops@example.com", 35, 50),
    ]
    assert mask(text, findings) == "Ticket {ticket} for {booking id}, mail {EMAIL}; TCK-12 is too short."


def test_regexes_alone_and_empty_matches() -> None:
    assert PiiScanner([], [("x", r"x*")]).scan("abc") == []
    assert PiiScanner([], [("digits", r"\d+")]).scan("a1b22") == [
        Finding("digits", "1", 1, 2, regex=True),
        Finding("digits", "22", 3, 5, regex=True),
    ]


def test_a_runaway_custom_regex_times_out_instead_of_failing_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pii, "REGEX_TIMEOUT_S", 0.05)
    with pytest.raises(TimeoutError):
        PiiScanner([], [("evil", r"(a|aa)+b")]).scan("a" * 60)


def test_overlaps_keep_one_finding() -> None:
    # A custom regex scores 1.0; at an equal score the longer match wins.
    scanner = PiiScanner(["US_SOCIAL_SECURITY_NUMBER"], [("short", r"TCK-\d{6}"), ("long", r"TCK-\d{6}-\d{2}")])
    text = "SSN 536-22-8765 and ticket TCK-123456-01"
    assert [(f.type, f.match) for f in scanner.scan(text)] == [
        ("US_SOCIAL_SECURITY_NUMBER", "536-22-8765"),
        ("long", "TCK-123456-01"),
    ]
    ssn_regex = PiiScanner(["US_SOCIAL_SECURITY_NUMBER"], [("ssn-ish", r"\d{3}-\d{2}-\d{4}")])
    assert [(f.type, f.regex) for f in ssn_regex.scan(text)] == [("ssn-ish", True)]
    # A checksum-valid card number (1.0) beats the account number its digits also look like.
    assert [f.type for f in ALL.scan("Debit my account with card 4111111111111111.")] == ["CREDIT_DEBIT_CARD_NUMBER"]
    # An e-mail's domain is not also a URL.
    assert [f.type for f in ALL.scan("Write to ops@example.com.")] == ["EMAIL"]
    # Findings never overlap and come sorted.
    findings = ALL.scan(" ".join(text for _, text, _ in FOUND))
    assert findings == sorted(findings, key=lambda f: f.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


def test_mask_skips_overlapping_findings() -> None:
    text = "abcdef"
    findings = [Finding("B", "cdef", 2, 6), Finding("A", "abcd", 0, 4), Finding("C", "f", 5, 6)]
    assert mask(text, findings) == "{A}e{C}"  # B overlaps A and is skipped
    assert mask(text, []) == text


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="PHONE_NUMBER"):
        PiiScanner(["EMAIL", "PHONE_NUMBER"])
    with pytest.raises(ValueError, match="broken"):
        PiiScanner([], [("broken", r"(unclosed")])


def test_constructing_a_scanner_does_not_build_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> Any:
        raise AssertionError("engine built")

    monkeypatch.setattr(pii, "_engine_instance", None)
    monkeypatch.setattr(pii, "_recognizers", fail)
    scanner = PiiScanner(SUPPORTED, [("ticket", r"TCK-\d{6}")])
    assert scanner.scan("") == []
    assert PiiScanner([], [("ticket", r"TCK-\d{6}")]).scan("TCK-123456")[0].type == "ticket"


def test_engine_builds_offline_without_a_spacy_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import spacy

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access")

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("spaCy model load")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(spacy, "load", no_model)
    monkeypatch.setattr(pii, "_engine_instance", None)
    findings = PiiScanner(["EMAIL", "PHONE", "NAME"]).scan("Dr. Ann Lee, ann@mail.example.co.uk, +1 206 555 0142")
    assert [f.type for f in findings] == ["NAME", "EMAIL", "PHONE"]


def test_scanning_from_many_threads_agrees_with_one() -> None:
    texts = [text for _, text, _ in FOUND] + BENIGN
    expected = [ALL.scan(text) for text in texts]
    results: dict[int, list[list[Finding]]] = {}

    def work(n: int) -> None:
        results[n] = [ALL.scan(text) for text in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[n] == expected for n in range(4))
