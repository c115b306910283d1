"""Parsing raw mail: headers, text, HTML and attachments come out readable; nothing raises."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gateway.inbound.parse import parse
from tests.conftest import CORPORA, corpus


def test_plain_mail_fields():
    raw = (
        b'From: "Doe, Jane" <Jane.Doe@Example.COM>\r\nTo: Support <help@acme.test>, b@x.org\r\n'
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus =?iso-8859-1?q?K=F6ln?=\r\n"
        b"Message-ID: <abc@example.com>\r\nIn-Reply-To: <x1@acme.test>\r\n"
        b"References: <x0@acme.test> <x1@acme.test>\r\n\r\nHello\r\n"
    )
    mail = parse(raw)
    assert mail.from_ is not None and mail.from_.as_dict() == {
        "name": "Doe, Jane",
        "address": "jane.doe@example.com",
    }
    assert [a.address for a in mail.to] == ["help@acme.test", "b@x.org"]
    assert mail.subject == "Grüße aus Köln"
    assert mail.message_id == "abc@example.com"
    assert mail.in_reply_to == ["x1@acme.test"]
    assert mail.references == ["x0@acme.test", "x1@acme.test"]
    assert mail.text == "Hello"
    assert mail.html is None and mail.defects == []


def test_encoded_word_split_inside_a_multibyte_character():
    # "ü" (C3 BC) split across two encoded words; RFC 2047 §6.2 joins adjacent words.
    raw = b"From: a@b.c\r\nSubject: =?utf-8?B?R3LD?= =?utf-8?B?vGXDnw==?=\r\n\r\nx"
    assert parse(raw).subject == "Grüeß"


def test_broken_encoded_word_and_unknown_charset_do_not_raise():
    raw = b"From: =?x-nope?Q?J=F6rg?= <j@x.de>\r\nSubject: =?utf-8?B?@@@?=\r\n\r\nx"
    mail = parse(raw)
    assert mail.from_ is not None and mail.from_.address == "j@x.de"
    assert any("charset" in d for d in mail.defects)


def test_undeclared_8bit_body_and_header():
    raw = "From: René <r@x.fr>\nSubject: Café\n\nDéjà vu\n".encode()
    mail = parse(raw)
    assert (mail.subject, mail.text, mail.from_.name) == ("Café", "Déjà vu", "René")


def test_mislabelled_latin1_that_is_really_utf8():
    raw = b"From: a@b.c\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + "Ärger".encode()
    assert parse(raw).text == "Ärger"


def test_html_only_mail_becomes_text_with_links_and_no_css():
    raw = (
        b"From: a@b.c\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{color:red}</style><script>alert(1)</script></head>"
        b'<body><p>See <a href="https://x.org/faq">the FAQ</a></p></body></html>'
    )
    mail = parse(raw)
    assert "https://x.org/faq" in mail.text and "the FAQ" in mail.text
    assert "color" not in mail.text and "alert" not in mail.text
    assert mail.html is not None and "<a href" in mail.html


def test_alternative_prefers_plain_and_keeps_html():
    raw = (
        b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"'
        b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain words\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html words</p>\r\n--b--\r\n"
    )
    mail = parse(raw)
    assert mail.text == "plain words" and "html words" in (mail.html or "")


def test_inline_image_referenced_by_cid_and_rfc2231_filename():
    raw = (
        b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="b"'
        b"\r\n\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Look <img src="cid:img1@x"></p>\r\n--b\r\nContent-Type: image/png\r\n'
        b"Content-ID: <img1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
        b" filename*0*=utf-8''Rechnung%20M%C3%A4rz;\r\n filename*1*=.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"
    )
    mail = parse(raw)
    image, pdf = mail.attachments
    assert image.inline and image.content_id == "img1@x" and image.data.startswith(b"\x89PNG")
    assert pdf.filename == "Rechnung März.pdf" and not pdf.inline and pdf.data == b"%PDF"


def test_attached_message_named_from_its_subject():
    raw = (
        b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"'
        b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b\r\n"
        b"Content-Type: message/rfc822\r\n\r\nFrom: c@d.e\r\nSubject: Old thread\r\n\r\nold\r\n"
        b"--b--\r\n"
    )
    mail = parse(raw)
    assert mail.text == "see below"
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ("Old thread.eml", "message/rfc822")
    ]


def test_broken_boundary_and_missing_from_are_recorded():
    raw = (
        b'Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="nope"'
        b"\r\n\r\n--other\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    )
    mail = parse(raw)
    assert mail.from_ is None
    assert "no From header" in mail.defects and "broken MIME boundary" in mail.defects


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\x00\xff\xfe", b"garbage without headers", b"From:\r\n\r\n", b":::\r\n\r\n\x00",
     b"Content-Type: multipart/mixed\r\n\r\n--\r\n--\r\n", b"Subject: =?utf-8?Q?=?=\r\n\r\n"],
)
def test_garbage_never_raises(raw):
    mail = parse(raw)
    assert isinstance(mail.text, str) and isinstance(mail.defects, list)


def test_random_bytes_never_raise():
    rng = random.Random(7)
    base = (CORPORA / "zammad" / "test" / "data" / "mail" / "mail001.box")
    seed = base.read_bytes() if base.exists() else b"From: a@b.c\r\nSubject: s\r\n\r\nbody"
    for _ in range(50):
        data = bytearray(seed[:4000])
        for _ in range(40):
            data[rng.randrange(len(data))] = rng.randrange(256)
        parse(bytes(data))


# -- shared corpora -----------------------------------------------------------------------------

# Names zammad invents for parts it stores itself, and sizes of parts we re-serialise.
ZAMMAD_OWN_NAMES = {"message.html"}


def _size_matches(name: str, want: int, have: int) -> bool:
    # Attached mails and delivery reports are re-serialised by us; allow a few bytes of folding.
    if name.endswith((".eml", ".txt")) and abs(want - have) <= max(2, want // 100):
        return True
    return want == have


def test_zammad_corpus_from_subject_attachments():
    root = corpus("zammad")
    cases = json.loads((root / "_expectations" / "expectations.json").read_text())["cases"]
    hits, misses = 0, []
    for key, exp in cases.items():
        mail = parse((root / exp["_input"]).read_bytes())
        sender = mail.from_
        from_ok = (exp.get("from_email") or "").lower() == (sender.address if sender else "")
        from_ok &= (exp.get("from_display_name") or "") == (sender.name if sender else "")
        subject_ok = (exp.get("subject") or "").strip() == mail.subject.strip()
        have = [(a.filename, a.size) for a in mail.attachments]
        att_ok = all(
            any(n == a["filename"] and _size_matches(n, a["size"], s) for n, s in have)
            for a in exp.get("attachments", [])
            if a["filename"] not in ZAMMAD_OWN_NAMES
        )
        if from_ok and subject_ok and att_ok:
            hits += 1
        else:
            misses.append(Path(key).stem)
    share = hits / len(cases)
    # Known disagreements: mail016/019 (zammad falls back to Reply-To when From is missing),
    # mail018 (zammad leaves UTF-7 undecoded), mail064 (zammad's NFD mojibake), and names zammad
    # invents for unnamed parts ("file", "image.jpg", deduplicated "...1.png"); mail065, where
    # zammad splits "=?iso-8859-1?Q?B=FCrling,=20Andreas?=" at its comma and we do not.
    print(f"zammad: {hits}/{len(cases)} = {share:.0%}; misses: {misses}")
    assert share >= 0.80  # measured 86/106


def _meets(mail, field: str, value: str) -> bool | None:
    text, names = mail.text, [a.filename for a in mail.attachments]
    checks = {
        "first_text_contains": lambda: value in text,
        "body_contains": lambda: value in text,
        "subject": lambda: mail.subject == value,
        "subject_prefix": lambda: mail.subject.startswith(value),
        "attachment_filename": lambda: value in names,
        "text_body": lambda: text.strip() == value,
        "text_body_contains": lambda: value in text,
        "html_body_contains": lambda: value in (mail.html or ""),
        "description": lambda: text.strip() == value,
    }
    return checks[field]() if field in checks else None


def test_rt_and_django_helpdesk_corpora():
    checks = []
    for name in ("rt", "django_helpdesk"):
        root = corpus(name)
        cases = json.loads((root / "_expectations" / "expectations.json").read_text())["cases"]
        for case in cases:
            mail = parse((root / case["input"]).read_bytes())
            for field, value in case["expected"].items():
                verdict = _meets(mail, field, value)
                if verdict is not None:
                    checks.append((name, case["input"], field, verdict))
    # Disagreements: rt very-long-subject expects RT's 200-char truncation (we keep it all);
    # django utf-nondecodable expects the HTML part's text (we prefer text/plain).
    hits = sum(ok for *_, ok in checks)
    share = hits / len(checks)
    misses = [c[:3] for c in checks if not c[3]]
    print(f"rt+django_helpdesk: {hits}/{len(checks)} = {share:.0%}; misses: {misses}")
    assert share >= 0.85


def test_whole_corpus_parses_and_never_raises():
    files = [p for name in ("zammad", "rt", "spamscope_mail_parser", "flufl_bounce")
             for p in (CORPORA / name).rglob("*") if p.is_file() and p.suffix not in (".json",
                                                                                      ".yml")]
    if not files:
        pytest.skip("shared corpora not found")
    for path in files:  # speed belongs in a benchmark, not a timed test
        assert parse(path.read_bytes()).headers is not None
