"""Attachments as they come: inline images, attached mails, winmail.dat, and types that lie."""

from __future__ import annotations

import base64
import io
import struct
import zipfile
from email import message_from_bytes

from gateway.inbound.parse import parse

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + (
    b"This program cannot be run in DOS mode.\r\r\n$")


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


def _mixed(*parts: str, ctype: str = "multipart/mixed") -> bytes:
    body = "".join(f"--b\r\n{part}\r\n" for part in parts)
    return (f"From: a@b.c\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: {ctype}; boundary="b"\r\n\r\n{body}--b--\r\n').encode()


def _file(ctype: str, data: bytes, headers: str = "") -> str:
    return (f"Content-Type: {ctype}\r\n{headers}Content-Transfer-Encoding: base64\r\n\r\n"
            f"{_b64(data)}")


TEXT = "Content-Type: text/plain; charset=utf-8\r\n\r\nsee attached"


def test_inline_cid_image_is_marked_inline_with_its_content_id():
    html = ('Content-Type: text/html; charset=utf-8\r\n\r\n'
            '<p>Our logo: <img src="cid:logo.png@01D9"></p>')
    raw = _mixed(html, _file("image/png", PNG, "Content-ID: <logo.png@01D9>\r\n"),
                 _file("image/png", PNG, 'Content-Disposition: attachment; filename="b.png"\r\n'),
                 ctype="multipart/related")
    mail = parse(raw)
    inline, attached = mail.attachments
    assert (inline.inline, inline.content_id, inline.data) == (True, "logo.png@01D9", PNG)
    assert not attached.inline and attached.filename == "b.png"
    assert 'src="cid:logo.png@01D9"' in (mail.html_safe or "")


def test_image_with_inline_disposition_but_no_reference_is_still_inline():
    raw = _mixed(TEXT, _file("image/png", PNG, "Content-Disposition: inline\r\n"))
    [image] = parse(raw).attachments
    assert image.inline and image.filename == "image.png"


def test_attached_message_is_kept_as_eml_and_its_text_stays_out_of_the_body():
    inner = (
        "From: Old Customer <old@customer.test>\r\nSubject: Original complaint\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="in"\r\n\r\n'
        "--in\r\nContent-Type: text/plain\r\n\r\nSECRET INNER TEXT\r\n--in\r\n"
        + _file("application/pdf", PDF, 'Content-Disposition: attachment; filename="in.pdf"\r\n')
        + "\r\n--in--\r\n"
    )
    raw = _mixed(TEXT, f"Content-Type: message/rfc822\r\n\r\n{inner}")
    mail = parse(raw)
    assert mail.text == "see attached" and "SECRET" not in mail.text
    [eml] = mail.attachments  # the inner PDF travels inside the .eml, not beside it
    assert (eml.filename, eml.content_type, eml.inline) == (
        "Original complaint.eml", "message/rfc822", False)
    again = message_from_bytes(eml.data)
    assert again["Subject"] == "Original complaint" and b"SECRET INNER TEXT" in eml.data


def _tnef_attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
    """One TNEF attribute (MS-OXTNEF 2.1.3.1): level, id, length, data, 16-bit checksum."""
    header = struct.pack("<BHHI", level, name, kind, len(data))
    return header + data + struct.pack("<H", sum(data) & 0xFFFF)


def _winmail(files: list[tuple[str, bytes]]) -> bytes:
    blob = struct.pack("<IH", 0x223E9F78, 1)
    blob += _tnef_attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x00010000))  # TNEF version
    blob += _tnef_attribute(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))  # OEM code page
    blob += _tnef_attribute(1, 0x8008, 0x0007, b"IPM.Microsoft Mail.Note\x00")
    for name, data in files:
        blob += _tnef_attribute(2, 0x9002, 0x0006, b"\x01\x00" + b"\xff" * 4 + b"\x00" * 8)
        blob += _tnef_attribute(2, 0x8010, 0x0001, name.encode("cp1252") + b"\x00")
        blob += _tnef_attribute(2, 0x800F, 0x0006, data)
    return blob


def test_winmail_dat_is_opened_into_its_files():
    tnef = _winmail([("Übersicht.txt", b"Umsatz 2024: 42\r\n"), ("chart.png", PNG)])
    raw = _mixed(TEXT, _file("application/ms-tnef", tnef,
                             'Content-Disposition: attachment; filename="winmail.dat"\r\n'))
    mail = parse(raw)
    assert [(a.filename, a.content_type, a.data) for a in mail.attachments] == [
        ("Übersicht.txt", "text/plain", b"Umsatz 2024: 42\r\n"),
        ("chart.png", "image/png", PNG),
    ]


def test_winmail_dat_we_cannot_read_is_kept_as_it_came():
    broken = struct.pack("<IH", 0x223E9F78, 1) + b"\x02\x10\x80\x01\x00\xff\xff\xff\x7f"
    raw = _mixed(TEXT, _file("application/vnd.ms-tnef", broken,
                             'Content-Disposition: attachment; filename="winmail.dat"\r\n'))
    [kept] = parse(raw).attachments
    assert kept.filename == "winmail.dat" and kept.data == broken


def test_content_type_is_sniffed_and_the_declared_one_kept():
    raw = _mixed(
        TEXT,
        _file("image/png", PDF, 'Content-Disposition: attachment; filename="scan.png"\r\n'),
        _file("text/plain", EXE, 'Content-Disposition: attachment; filename="readme.txt"\r\n'),
        _file("application/octet-stream", PNG,
              'Content-Disposition: attachment; filename="photo"\r\n'),
    )
    pdf, exe, png = parse(raw).attachments
    assert (pdf.content_type, pdf.declared_type) == ("application/pdf", "image/png")
    assert (exe.content_type, exe.declared_type) == ("application/x-msdownload", "text/plain")
    assert png.content_type == "image/png"
    assert pdf.as_dict()["declared_type"] == "image/png"  # `inspect` shows the lie
    assert "declared_type" not in parse(_mixed(TEXT, _file(
        "application/pdf", PDF, "Content-Disposition: attachment\r\n"))).attachments[0].as_dict()


def test_unnamed_executable_declared_as_text_is_a_file_not_body_text():
    raw = _mixed(TEXT, _file("text/plain", EXE))
    mail = parse(raw)
    assert mail.text == "see attached" and "DOS mode" not in mail.text
    [exe] = mail.attachments
    assert exe.content_type == "application/x-msdownload" and exe.data == EXE


def test_office_document_is_not_demoted_to_zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    raw = _mixed(TEXT, _file(docx, buffer.getvalue(),
                             'Content-Disposition: attachment; filename="a.docx"\r\n'))
    [doc] = parse(raw).attachments
    assert doc.content_type == docx


# -- broken transfer encodings --------------------------------------------------------------------

def _encoded(cte: str, body: str, name: str = "data.bin") -> bytes:
    return _mixed(TEXT, f"Content-Type: application/octet-stream\r\n"
                        f'Content-Disposition: attachment; filename="{name}"\r\n'
                        f"Content-Transfer-Encoding: {cte}\r\n\r\n{body}")


def test_base64_with_a_lone_last_character_keeps_the_whole_bytes():
    # 4n+1 characters cannot be decoded (binascii refuses, the stdlib returns the base64 text);
    # the last character carries six bits, no byte: the rest is the file.
    body = base64.b64encode(PDF[:30]).decode() + "Q"
    [att] = parse(_encoded("base64", body)).attachments
    assert att.data == PDF[:30]


def test_base64_padded_block_by_block_is_decoded_to_the_end():
    body = "\r\n".join(base64.b64encode(chunk).decode() for chunk in (b"%PDF-", b"1.4\n", b"end"))
    mail = parse(_encoded("base64", body))
    assert mail.attachments[0].data == b"%PDF-1.4\nend" and "bad base64" in mail.defects


def test_text_after_the_base64_padding_is_not_decoded_into_the_file():
    body = base64.b64encode(b"%PDF-").decode() + "\r\n\r\n-- \r\nSent via the Acme list"
    [att] = parse(_encoded("base64", body)).attachments
    assert att.data == b"%PDF-"


def test_8bit_junk_labelled_base64_is_kept_as_it_came():
    raw = _mixed(TEXT).replace(b"--b--", b"--b\r\nContent-Type: application/octet-stream\r\n"
                               b"Content-Transfer-Encoding: base64\r\n\r\n\xff\xfe\x00\x81\x92\r\n"
                               b"--b--")
    mail = parse(raw)
    assert mail.attachments[0].data.startswith(b"\xff\xfe\x00\x81\x92")


def test_uuencode_with_and_without_its_begin_line():
    import binascii
    line = binascii.b2a_uu(b"Hello Zammad").decode().rstrip("\n")
    for body in (f"begin 644 hello.txt\r\n{line}\r\n`\r\nend", f"{line}\r\n`"):
        [att] = parse(_encoded("x-uuencode", body, "hello.txt")).attachments
        assert att.data == b"Hello Zammad"


def test_a_word_after_the_base64_padding_is_not_decoded_into_the_file():
    data = bytes(range(256))[:100]  # 100 bytes: the last line ends in "=="
    for tail in ("Thanks", "Thanks!", "x", "Regards, Jane", "-- \r\nJane"):
        mail = parse(_encoded("base64", _b64(data) + tail))
        assert mail.attachments[0].data == data, tail


def test_base64_padded_block_by_block_in_full_lines_is_decoded_to_the_end():
    chunks = [bytes(range(i, i + 56)) for i in range(0, 200, 56)]  # 57-byte lines pad nothing
    body = "\r\n".join(base64.b64encode(c).decode() for c in chunks)  # 56: each ends in "="
    assert parse(_encoded("base64", body)).attachments[0].data == b"".join(chunks)


def test_a_stray_letter_after_large_base64_keeps_every_byte():
    # The slow path (its memory: bench/parse_memory.py --broken-base64).
    import random
    data = random.Random(4).randbytes(3_000_001)
    mail = parse(_encoded("base64", _b64(data) + "x"))
    assert mail.attachments[0].data == data and "bad base64" in mail.defects


def _uu(data: bytes) -> list[str]:
    import binascii
    return [binascii.b2a_uu(data[i : i + 45], backtick=True).decode().rstrip("\n")
            for i in range(0, len(data), 45)]


UU_DATA = bytes(range(256))[:200]


def test_uuencode_followed_by_a_signature_and_no_end_line():
    body = "\r\n".join(["begin 644 data.bin", *_uu(UU_DATA), "-- ", "John Smith", "ACME INC"])
    [att] = parse(_encoded("x-uuencode", body)).attachments
    assert att.data == UU_DATA


def test_uuencode_after_text_and_without_begin_skips_the_text():
    body = "\r\n".join(["Hello, here is the file:", "HELLO", *_uu(UU_DATA), "`"])
    [att] = parse(_encoded("x-uuencode", body)).attachments
    assert att.data == UU_DATA


def test_uuencode_with_a_bad_line_in_the_middle_keeps_the_lines_around_it():
    lines = _uu(UU_DATA)
    garbled = lines[1][:20] + "abc" + lines[1][23:]  # three characters changed in transit
    body = "\r\n".join(["begin 644 data.bin", lines[0], "this is not uuencode", garbled,
                         *lines[2:], "`", "end"])
    mail = parse(_encoded("x-uuencode", body))
    data = mail.attachments[0].data
    assert len(data) == len(UU_DATA) and data[:45] == UU_DATA[:45] and data[90:] == UU_DATA[90:]
    assert sum(a != b for a, b in zip(data, UU_DATA, strict=True)) <= 3
    assert "bad uuencode" in mail.defects


def test_uuencode_with_trailing_spaces_stripped_in_transit():
    data = b"\x00\x01" + b"\x00" * 43 + b"end of file"
    lines = [line.replace("`", " ").rstrip() for line in _uu(data)]  # old encoders' spaces
    [att] = parse(_encoded("x-uuencode", "\r\n".join(["begin 644 d", *lines, "end"]))).attachments
    assert att.data == data


# -- names for unnamed parts ----------------------------------------------------------------------

def test_unnamed_image_takes_the_filename_outlook_puts_in_its_content_id():
    html = 'Content-Type: text/html; charset=utf-8\r\n\r\n<img src="cid:image001.png@01D9A1B2">'
    raw = _mixed(html, _file("image/png", PNG, "Content-ID: <image001.png@01D9A1B2>\r\n"),
                 _file("image/png", PNG, "Content-ID: <image002.png@01D9A1B2>\r\n"),
                 _file("image/png", PNG, "Content-ID: <part1.06090408.01060107@x.org>\r\n"),
                 ctype="multipart/related")
    assert [a.filename for a in parse(raw).attachments] == [
        "image001.png", "image002.png", "image.png"]


def test_unnamed_part_of_an_unknown_type_is_named_after_what_it_is():
    [att] = parse(_mixed(TEXT, _file("application/others", PNG))).attachments
    assert (att.filename, att.content_type) == ("image.png", "image/png")


# -- attached mails and alternatives --------------------------------------------------------------

def test_attached_mail_keeps_the_line_ends_it_came_with():
    inner = "From: c@d.e\r\nSubject: Old\r\nX-Empty-Looking: yes\r\n\r\nline one\r\nline two\r\n"
    [eml] = parse(_mixed(TEXT, f"Content-Type: message/rfc822\r\n\r\n{inner}")).attachments
    assert eml.data == inner.encode()


def test_empty_attached_mail_is_empty():
    [eml] = parse(_mixed(TEXT, "Content-Type: message/rfc822\r\n\r\n")).attachments
    assert eml.data == b""


def test_alternative_made_of_several_html_pieces_keeps_them_all():
    # Apple Mail: plain text, or HTML, a file, and more HTML in a multipart/mixed.
    raw = (b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="a"'
           b"\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nfirst, then second\r\n"
           b'--a\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
           b"--m\r\nContent-Type: text/html\r\n\r\n<p>first</p>\r\n"
           b"--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
           b"filename=x.pdf\r\n\r\n%PDF-1.4\r\n"
           b"--m\r\nContent-Type: text/html\r\n\r\n<p>second</p>\r\n--m--\r\n--a--\r\n")
    mail = parse(raw)
    assert mail.text == "first, then second"
    assert "<p>first</p>" in (mail.html or "") and "<p>second</p>" in (mail.html or "")
    assert [a.filename for a in mail.attachments] == ["x.pdf"]
