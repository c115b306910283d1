"""The MIME that compose() writes by hand reads back cleanly in a standard parser."""

from __future__ import annotations

import email
import email.policy

import dkim
import pytest

from gateway.dkim_keys import generate
from gateway.outbound.compose import compose
from gateway.outbound.dkim_sign import signature_field
from gateway.outbound.render import Rendered

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40


def build(subject: str = "[TKT-0042] Printer", text: str = "Hello,\n\nDone.\n",
          html: str = "<p>Hello</p>\n", name: str = "Jane Doe", files=(), **kw) -> bytes:
    return compose(Rendered(subject, text, html), from_name="Acme Support",
                   from_address="support@acme.test", to_name=name,
                   to_address="jane@customer.test", message_id="m1@acme.test",
                   loop_marker="workestra-x", attachments=files, **kw).as_bytes()


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    return msg  # type: ignore[return-value]


def lines(raw: bytes) -> list[bytes]:
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line ends in CRLF"
    return raw.split(b"\r\n")


def test_every_line_is_crlf_ascii_and_short():
    raw = build(subject="[TKT-0042] " + "a long subject with many words " * 6,
                text="word " * 500 + "\n" + "x" * 300 + "\n", html="<p>" + "y" * 300 + "</p>",
                references=[f"{i:040d}@customer.test" for i in range(30)],
                name="Ødegaard " * 12, files=[("a" * 120 + ".pdf", "application/pdf", PDF)])
    assert raw.isascii()
    assert max(len(x) for x in lines(raw)) <= 78
    msg = parse(raw)
    assert msg["Subject"] == "[TKT-0042] " + ("a long subject with many words " * 6).strip()
    # (Python's parser shows a space between encoded words that RFC 2047 says to drop)
    assert msg["To"].addresses[0].display_name.split() == ["Ødegaard"] * 12
    assert msg["References"].split()[0] == f"<{10:040d}@customer.test>"  # the last 20 kept
    assert len(msg["References"].split()) == 20


def test_long_plain_names_fold_and_control_characters_never_start_a_header():
    raw = build(name="Jane " + "Averylongfamilyname " * 6,
                references=["a1@customer.test\r\nBcc: victim@example.test"],
                in_reply_to="a1@customer.test\nX-Evil: 1")
    assert max(len(x) for x in lines(raw)) <= 78
    msg = parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["To"].addresses[0].display_name == "Jane " + " ".join(["Averylongfamilyname"] * 6)


def test_the_text_and_html_round_trip_exactly():
    text = "Grüße, Jürgen\n\n\ttabbed line  \nA = B and =3D stays\n. a dot line\nFrom here\n"
    html = "<p style=\"color:#333\">Grüße — ok</p>\n"
    msg = parse(build(text=text, html=html))
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain.get_content().replace("\r\n", "\n") == text  # type: ignore[union-attr]
    assert rich.get_content().replace("\r\n", "\n") == html  # type: ignore[union-attr]


@pytest.mark.parametrize("filename", ["invoice 42.pdf", 'quote"and\\slash.pdf', "Übersicht.pdf",
                                      "名前.pdf", "x" * 100 + ".pdf", "\r\nBcc: evil@x.test"])
def test_attachments_keep_their_bytes_and_names(filename):
    msg = parse(build(files=[(filename, "application/pdf", PDF),
                             ("notes.txt", "text/plain; evil", b"hi\n")]))
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["Bcc"] is None
    first, second = msg.iter_attachments()
    assert first.get_filename() == " ".join(filename.split()) and first.get_content() == PDF
    assert first.get_content_disposition() == "attachment"
    assert second.get_content_type() == "application/octet-stream"  # not a type we write
    assert second.get_content() == b"hi\n"


def test_the_signature_covers_what_is_sent():
    pair = generate()
    composed = compose(Rendered("[TKT-0042] Dr\u00fccker", "Hallo\n", "<p>Hallo</p>"),
                       from_name="Acme Süpport", from_address="support@acme.test",
                       to_name="Jürgen", to_address="j@customer.test", message_id="m@acme.test",
                       loop_marker="workestra-x", in_reply_to="c1@customer.test",
                       references=["c1@customer.test"])
    raw = signature_field(composed.headers, composed.body, selector="s1", domain="acme.test",
                          private_pem=pair.private_pem) + composed.as_bytes()
    record = pair.txt_value().encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"s1._domainkey.acme.test." else b""

    assert dkim.verify(raw, dnsfunc=dns)
    tampered = raw.replace(b"Hallo\r\n", b"Hallo!\r\n", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)
