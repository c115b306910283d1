"""Parsing raw mail: headers, text, HTML and attachments come out readable; nothing raises."""

from __future__ import annotations

import json
import random
import re
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


def test_broken_boundary_with_8bit_text_keeps_the_text():
    # The re-parse of a multipart whose boundary never occurs must see its raw 8-bit bytes
    # (get_payload() would have replaced them with U+FFFD and the re-encode failed).
    raw = (b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="nope"'
           b"\r\n\r\n--real\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße aus Köln".encode() + b"\r\n"
           b"--real\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename=raw.bin\r\n\r\n\xff\xfe\x80\r\n--real--\r\n")
    mail = parse(raw)
    assert mail.text == "Grüße aus Köln" and not any("unreadable" in d for d in mail.defects)
    assert [(a.filename, a.data) for a in mail.attachments] == [("raw.bin", b"\xff\xfe\x80")]


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\x00\xff\xfe", b"garbage without headers", b"From:\r\n\r\n", b":::\r\n\r\n\x00",
     b"Content-Type: multipart/mixed\r\n\r\n--\r\n--\r\n", b"Subject: =?utf-8?Q?=?=\r\n\r\n"],
)
def test_garbage_never_raises(raw):
    mail = parse(raw)
    assert isinstance(mail.text, str) and isinstance(mail.defects, list)


def test_a_failing_header_charset_step_is_a_defect_not_a_raise(monkeypatch):
    from gateway.inbound import parse as parse_module

    def broken(data, declared):
        raise UnicodeError("a codec nobody foresaw")

    monkeypatch.setattr(parse_module, "header_charset", broken)
    raw = (b"From: Ren\xe9 <r@x.fr>\r\nSubject: caf\xe9\r\n"
           b"Content-Type: text/plain; charset=windows-1252\r\n\r\nDer Preis: 5 \x80\r\n")
    mail = parse(raw)
    assert mail.text == "Der Preis: 5 €" and mail.from_ is not None
    assert mail.from_.address == "r@x.fr" and "unreadable header charset: UnicodeError" in (
        mail.defects)


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


def _size_matches(name: str, want: int, data: bytes) -> bool:
    # Zammad stores some parts with LF line ends where the mail had CRLF (7bit text parts,
    # attached mails; not all: mail069's attached mail keeps CRLF), so a size is compared with
    # our bytes as they came and with their line ends as LF: the same content either way.
    sizes = {len(data), len(data) - data.count(b"\r\n")}
    # Attached mails and delivery reports are re-serialised by us; allow a few bytes of folding.
    if name.endswith((".eml", ".txt")):
        return any(abs(want - have) <= max(2, want // 100) for have in sizes)
    return want in sizes


def _name_matches(want: str, have: str) -> bool:
    # A U+FFFD in an expected name marks a byte zammad could not decode (an 8-bit byte under a
    # us-ascii RFC 2231 label, mail073); any one character there is accepted, so that reading
    # the byte as a letter ("Wölbung") is not counted against us.
    if "\ufffd" not in want:
        return want == have
    return re.fullmatch(".".join(map(re.escape, want.split("\ufffd"))), have) is not None


def _same_address(want: str, have: str) -> bool:
    # A From that is only a quoted string holding an address (mail035) is expected with its
    # quotes; the address is the same without them, and only without them can it be replied to.
    want = want.lower()
    if len(want) > 2 and want[0] == want[-1] == '"' and '"' not in want[1:-1]:
        want = want[1:-1]
    return want == have


def test_zammad_corpus_from_subject_attachments():
    root = corpus("zammad")
    cases = json.loads((root / "_expectations" / "expectations.json").read_text())["cases"]
    hits, misses = 0, []
    for key, exp in cases.items():
        mail = parse((root / exp["_input"]).read_bytes())
        sender = mail.from_
        from_ok = _same_address(exp.get("from_email") or "", sender.address if sender else "")
        from_ok &= (exp.get("from_display_name") or "") == (sender.name if sender else "")
        subject_ok = (exp.get("subject") or "").strip() == mail.subject.strip()
        have = [(a.filename, a.data) for a in mail.attachments]
        att_ok = all(
            any(_name_matches(a["filename"], n) and _size_matches(n, a["size"], d)
                for n, d in have)
            for a in exp.get("attachments", [])
            if a["filename"] not in ZAMMAD_OWN_NAMES
        )
        if from_ok and subject_ok and att_ok:
            hits += 1
        else:
            misses.append(Path(key).stem)
    share = hits / len(cases)
    # Known disagreements, where our answer is as good or better:
    # - mail016/019: no usable From; zammad falls back to Reply-To, we leave from_ empty (route
    #   falls back to the envelope sender, which authorisation checks).
    # - mail018: zammad leaves the UTF-7 encoded word undecoded and keeps folding tabs.
    # - mail046: zammad reads the raw GBK sender name as Latin mojibake; we read "武兰成".
    # - mail064: zammad's NFD mojibake in a filename; mail065: zammad splits
    #   "=?iso-8859-1?Q?B=FCrling,=20Andreas?=" at its comma, we do not.
    # - mail076, mail087: zammad keeps broken From headers as they are ("...@example.com>",
    #   "Test test@example.com" as an address); we give a name and an address one can reply to.
    # - mail092: zammad drops the RFC 5322 comment from "MAILER-DAEMON (Mail Delivery System)".
    # - names zammad invents or rewrites: "file" (mail042/053/087, where we use the part's
    #   Content-Description or, for mail087's unlabelled text part, read it as the body),
    #   "document.html" for HTML parts we keep as body (mail062/085), a Content-ID number as a
    #   name (mail100), and de-duplicated names ("video1.mov", "...at 091.00.38.png": mail062/102).
    print(f"zammad: {hits}/{len(cases)} = {share:.0%}; misses: {misses}")
    assert share >= 0.85  # measured 91/106


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
