"""Charsets as mail really uses them: legacy code pages, broken encoded words, RFC 2231 names,
mislabelled and undeclared 8-bit text all come out as the words the sender typed."""

from __future__ import annotations

import base64
import quopri
import time

import pytest

from gateway.inbound.parse import parse


def word(text: str, label: str, codec: str, encoding: str = "B") -> str:
    """An RFC 2047 encoded word, built the way a mail client would."""
    data = text.encode(codec)
    if encoding == "B":
        return f"=?{label}?B?{base64.b64encode(data).decode()}?="
    q = quopri.encodestring(data, header=True).decode().replace("?", "=3F")
    return f"=?{label}?Q?{q}?="


LEGACY = [
    # label, Python codec, display name, subject, body
    ("windows-1252", "cp1252", "René Noël", "Facture d’été – 50 €", "La facture coûte 50 € «TTC»."),
    ("iso-2022-jp", "iso2022_jp", "山田太郎", "お問い合わせ：プリンター",
     "プリンターが壊れました。"),
    ("gb2312", "gb2312", "张伟", "打印机故障", "您好，打印机坏了，请尽快处理。"),
    ("gbk", "gbk", "朱镕基", "打印机故障", "您好，打印机坏了。"),
    ("koi8-r", "koi8_r", "Иван Петров", "Принтер не работает", "Здравствуйте, принтер сломался."),
    ("windows-1251", "cp1251", "Иван Петров", "Принтер не работает", "Принтер сломался."),
    ("big5", "big5", "陳大文", "印表機故障", "您好，印表機壞了。"),
    ("shift_jis", "shift_jis", "山田花子", "プリンター故障", "至急対応をお願いします。"),
    ("euc-kr", "euc_kr", "김철수", "프린터 고장", "안녕하세요, 프린터가 고장났습니다."),
    ("iso-8859-2", "iso8859_2", "Łukasz Żółć", "Drukarka nie działa",
     "Dzień dobry, proszę o pomoc."),
    ("iso-8859-7", "iso8859_7", "Γιώργος", "Εκτυπωτής", "Ο εκτυπωτής δεν λειτουργεί."),
]


@pytest.mark.parametrize("encoding", ["B", "Q"])
@pytest.mark.parametrize(("label", "codec", "name", "subject", "body"), LEGACY,
                         ids=[case[0] for case in LEGACY])
def test_legacy_charset_in_subject_from_name_and_body(label, codec, name, subject, body,
                                                      encoding):
    cte = "7bit" if codec == "iso2022_jp" else "8bit"
    raw = (f"From: {word(name, label, codec, encoding)} <sender@example.test>\r\n"
           f"To: support@acme.test\r\nSubject: {word(subject, label, codec, encoding)}\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={label}\r\n"
           f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body.encode(codec) + b"\r\n"
    mail = parse(raw)
    assert mail.from_ is not None
    assert (mail.from_.name, mail.from_.address) == (name, "sender@example.test")
    assert mail.subject == subject
    assert mail.text == body
    assert mail.defects == []


def test_iso_8859_1_label_means_windows_1252():
    # WHATWG: the € sign (0x80) sent under an ISO-8859-1 label is windows-1252's.
    raw = (b"From: a@b.c\r\nSubject: =?iso-8859-1?Q?Preis_=80_5?=\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nPreis \x80 5, \x93quoted\x94\r\n")
    mail = parse(raw)
    assert mail.subject == "Preis € 5" and mail.text == "Preis € 5, “quoted”"


# -- broken encoded words -------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    ("=?utf-8?Q?Caf=C3=A9", "Café"),                              # no closing ?=
    ("=?utf-8?Q?Why?_Caf=C3=A9?=", "Why? Café"),                  # "?" inside Q text
    ("=?utf-8?B?Q2Fmw6k?=", "Café"),                              # base64 without padding
    ("=?utf-8?B?w5xi ZXI=?=", "Über"),                            # a space inside the word
    ("=?UTF-8*de?Q?Gr=C3=BC=C3=9Fe?=", "Grüße"),                  # RFC 2231 language tag
    ("Re:=?utf-8?Q?Caf=C3=A9?=", "Re:Café"),                      # glued to plain text
    ("=?utf-8?B?R3LD?= =?utf-8?Q?=BC=C3=9Fe?=", "Grüße"),         # one character, two words
    ("=?utf-8?q?a?= =?iso-8859-1?q?=E4?=", "aä"),                 # two charsets side by side
])
def test_broken_encoded_words_in_subject(header, expected):
    mail = parse(f"From: a@b.c\r\nSubject: {header}\r\n\r\nx".encode())
    assert mail.subject == expected


def test_raw_utf8_next_to_an_encoded_word():
    raw = "From: a@b.c\r\nSubject: Grüße =?utf-8?Q?aus_K=C3=B6ln?=\r\n\r\nx".encode()
    assert parse(raw).subject == "Grüße aus Köln"


def test_encoded_word_with_a_comma_does_not_split_the_sender():
    # RFC 2047 §5 forbids a bare comma in such a word; Outlook sends it anyway ("Last, First").
    raw = (b"From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>\r\n"
           b"To: =?utf-8?Q?M=C3=BCller,_Hans?= <h@x.de>, =?utf-8?B?w4RkYQ==?= <a@x.de>\r\n\r\nx")
    mail = parse(raw)
    assert mail.from_ is not None and mail.from_.name == "Bürling, Andreas"
    assert [(a.name, a.address) for a in mail.to] == [("Müller, Hans", "h@x.de"),
                                                      ("Äda", "a@x.de")]


def test_unknown_charset_in_a_word_is_a_defect_not_a_crash():
    mail = parse(b"From: a@b.c\r\nSubject: =?x-klingon?Q?Qapla=27?=\r\n\r\nx")
    assert "Qapla'" in mail.subject and "unknown charset x-klingon" in mail.defects


# -- RFC 2231 filenames ---------------------------------------------------------------------------

def _named(params: str, where: str = "disposition") -> bytes:
    disposition = f"attachment;{params}" if where == "disposition" else "attachment"
    ctype = "application/pdf" + (f";{params}" if where == "type" else "")
    return (f"From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b"
            f"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--b\r\n"
            f"Content-Type: {ctype}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b--\r\n").encode()


@pytest.mark.parametrize(("params", "where", "expected"), [
    # three continuations, the middle one not percent-encoded (RFC 2231 §4.1 allows mixing)
    ("\r\n filename*0*=UTF-8''%E2%82%AC%20Rechnung;\r\n filename*1=\" Januar \";"
     "\r\n filename*2*=M%C3%A4rz.pdf", "disposition", "€ Rechnung Januar März.pdf"),
    ("\r\n filename*=iso-8859-1'de'Gr%FC%DFe%20an%20alle.pdf", "disposition", "Grüße an alle.pdf"),
    ('\r\n filename*0="a very long name that a client ";\r\n filename*1="split in two.pdf"',
     "disposition", "a very long name that a client split in two.pdf"),
    ("\r\n name*0*=utf-8''%D0%A1%D1%87%D0%B5%D1%82;\r\n name*1*=.pdf", "type", "Счет.pdf"),
    ('\r\n filename="=?utf-8?B?0KHRh9C10YIucGRm?="', "disposition", "Счет.pdf"),  # Outlook
    ("\r\n filename*=utf-8''..%2F..%2Fetc%2Fpasswd", "disposition", "_.._etc_passwd"),
    # RFC 2231 charsets left out, mislabelled or unknown: the bytes decide, not US-ASCII
    ("\r\n filename*=''%C3%9Cbersicht%20M%C3%A4rz.pdf", "disposition", "Übersicht März.pdf"),
    ("\r\n filename*=iso-8859-1''%C3%9Cbersicht.pdf", "disposition", "Übersicht.pdf"),
    ("\r\n filename*=us-ascii''Aufma%DF%20K%F6ln.pdf", "disposition", "Aufmaß Köln.pdf"),
    ("\r\n filename*=x-unheard-of''%C3%9Cbersicht.pdf", "disposition", "Übersicht.pdf"),
    ("\r\n name*=gb2312''%B1%A8%B8%E6.pdf", "type", "报告.pdf"),
])
def test_rfc2231_filenames(params, where, expected):
    [att] = parse(_named(params, where)).attachments
    assert att.filename == expected and att.data == b"%PDF-1.4"


# -- mislabelled and undeclared 8-bit text ---------------------------------------------------------

@pytest.mark.parametrize("label", ["us-ascii", "iso-8859-1", "windows-1252"])
def test_utf8_bytes_under_a_latin_label(label):
    raw = (f"From: a@b.c\r\nContent-Type: text/plain; charset={label}\r\n\r\n".encode()
           + "Ärger mit der Größe – 5 €".encode())
    assert parse(raw).text == "Ärger mit der Größe – 5 €"


def test_gbk_text_labelled_gb2312():
    # 镕 and 琇 are in GBK but not in GB2312; a strict GB2312 decoder would fail on them.
    body = "朱镕基和陈琇的打印机坏了"
    raw = (b"From: a@b.c\r\nSubject: =?gb2312?B?" + base64.b64encode(body.encode("gbk"))
           + b"?=\r\nContent-Type: text/plain; charset=gb2312\r\n\r\n" + body.encode("gbk"))
    mail = parse(raw)
    assert mail.subject == body and mail.text == body


def test_latin1_text_labelled_utf8():
    raw = b"From: a@b.c\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCaf\xe9 cr\xe8me"
    assert parse(raw).text == "Café crème"


def test_utf8_with_a_stray_latin1_byte_keeps_both():
    raw = (b"From: a@b.c\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           + "Grüße 差出人 ".encode() + b"und M\xfcller")
    assert parse(raw).text == "Grüße 差出人 und Müller"


UNDECLARED = [
    ("cp1252", "Bonjour, la facture de décembre est erronée. Merci de vérifier à nouveau, "
               "très cordialement, René Noël, Genève"),
    ("cp1250", "Dzień dobry, moja drukarka nie działa. Proszę o pomoc jak najszybciej, "
               "dziękuję bardzo, Łukasz Żółć"),
    ("koi8_r", "Здравствуйте, у меня не работает принтер в комнате четыре. Спасибо."),
    ("cp1251", "Здравствуйте, у меня не работает принтер в комнате четыре. Спасибо."),
    ("gbk", "您好，我的打印机坏了，请尽快帮忙处理。谢谢！"),
    ("shift_jis", "こんにちは、プリンターが壊れました。至急対応をお願いします。"),
]


@pytest.mark.parametrize(("codec", "body"), UNDECLARED, ids=[c for c, _ in UNDECLARED])
def test_8bit_body_without_any_declaration(codec, body):
    raw = b"From: a@b.c\r\nSubject: Hilfe\r\n\r\n" + body.encode(codec) + b"\r\n"
    assert parse(raw).text == body


def test_undeclared_part_takes_the_charset_its_sibling_declares():
    raw = (b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b'
           b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nmarted\xec\r\n"
           b"--b\r\nContent-Type: text/html\r\n\r\n<p>Domani e marted\xec, luned\xec</p>\r\n"
           b"--b--\r\n")
    mail = parse(raw)
    assert mail.text == "martedì" and "Domani e martedì, lunedì" in (mail.html or "")


def test_undeclared_8bit_header_takes_the_body_charset():
    raw = (b"From: Ren\xe9 <r@x.fr>\r\nSubject: Caf\xe9\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nD\xe9j\xe0 vu")
    mail = parse(raw)
    assert (mail.subject, mail.from_.name, mail.text) == ("Café", "René", "Déjà vu")


def test_undeclared_8bit_headers_take_the_charset_they_are_valid_in():
    # A filter wraps a GBK mail in a Latin-1 report and copies its raw 8-bit headers: the
    # first declared charset (ISO-8859-1) would turn them into "×ª·¢£º..."; GB2312, declared
    # by the wrapped mail, is the one the bytes read as words in.
    subject, name = "转发：整体提升企业服务水平", "张伟"
    inner = (b"From: a@b.c\r\nSubject: " + subject.encode("gbk") + b"\r\n"
             b"Content-Type: text/plain; charset=gb2312\r\n\r\n" + "您好".encode("gbk") + b"\r\n")
    raw = (b"From: " + name.encode("gbk") + b" <z@w.cn>\r\nSubject: " + subject.encode("gbk")
           + b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nSpam score: 9\xb0\r\n"
           b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n")
    mail = parse(raw)
    assert (mail.subject, mail.from_.name) == (subject, name)
    assert [a.filename for a in mail.attachments] == [subject + ".eml"]
    assert mail.text == "Spam score: 9°"  # the body keeps its own declaration


def test_latin_headers_stay_latin_next_to_a_cjk_part():
    raw = (b"From: Ren\xe9 M\xfcller <r@x.fr>\r\nSubject: Gr\xfc\xdfe aus K\xf6ln, caf\xe9 cr\xe8me"
           b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nHallo\r\n"
           b"--b\r\nContent-Type: text/plain; charset=gb2312\r\n"
           b"Content-Disposition: attachment; filename=cn.txt\r\n\r\n"
           + "您好".encode("gbk") + b"\r\n--b--\r\n")
    mail = parse(raw)
    assert (mail.subject, mail.from_.name) == ("Grüße aus Köln, café crème", "René Müller")


@pytest.mark.parametrize(("header", "name", "address"), [
    ("Jane Doe jane@example.org", "Jane Doe", "jane@example.org"),  # no angle brackets
    ("Jane Q. Doe jane@example.org", "Jane Q. Doe", "jane@example.org"),
    ('"Doe, Jane" jane@example.org', "Doe, Jane", "jane@example.org"),
    ("=?utf-8?q?J=C3=B6rg?= joerg@example.de", "Jörg", "joerg@example.de"),
    ("Jane Doe <mailto:jane@example.org>", "Jane Doe", "jane@example.org"),  # web forms
    ("jane@example.org (Jane Doe)", "Jane Doe", "jane@example.org"),
    ('"jane@example.org"', "", "jane@example.org"),
    ("Jane Doe (jane@example.org)", "Jane Doe", "jane@example.org"),  # address as a comment
    ("=?iso-8859-2?Q?Namedy=F1ski?= (hans@example.pl)", "Namedyński", "hans@example.pl"),
])
def test_sender_written_without_rfc_5322_brackets(header, name, address):
    mail = parse(f"From: {header}\r\nTo: help@acme.test\r\n\r\nx".encode())
    assert mail.from_ is not None and (mail.from_.name, mail.from_.address) == (name, address)


def test_a_bare_address_list_is_not_merged():
    mail = parse(b"From: a@b.c\r\nTo: x@example.org, Bob Smith bob@example.org\r\n\r\nx")
    assert [(a.name, a.address) for a in mail.to] == [
        ("", "x@example.org"), ("Bob Smith", "bob@example.org")]


def test_addresses_in_parentheses_each_keep_their_name():
    mail = parse(b"From: a@b.c\r\nTo: Bob Smith (bob@example.org), (x@example.org)\r\n\r\nx")
    assert [(a.name, a.address) for a in mail.to] == [
        ("Bob Smith", "bob@example.org"), ("", "x@example.org")]


def test_address_in_parentheses_pattern_stays_linear():
    from gateway.inbound.parse import _NAME_THEN_COMMENT_ADDR

    for line in ("x (a@" + "b." * 50_000, "(" + "a" * 100_000, " " * 100_000 + "(a@b"):
        started = time.perf_counter()
        assert _NAME_THEN_COMMENT_ADDR.fullmatch(line) is None
        assert time.perf_counter() - started < 0.5


def test_group_syntax_keeps_no_group_name_as_a_display_name():
    mail = parse(b"From: a@b.c\r\nTo: team: a@x.com, b@y.com;\r\n\r\nx")
    assert [(a.name, a.address) for a in mail.to] == [("", "a@x.com"), ("", "b@y.com")]


def test_a_mixed_address_list_is_mended_address_by_address():
    mail = parse(b"From: a@b.c\r\nTo: Jane Doe jane@x.org, Bob <bob@y.org>\r\n\r\nx")
    assert [(a.name, a.address) for a in mail.to] == [
        ("Jane Doe", "jane@x.org"), ("Bob", "bob@y.org")]


# -- charset labels that name no charset ----------------------------------------------------------

@pytest.mark.parametrize("label", ["undefined", "base64", "rot13", "unicode-escape", "idna"])
def test_a_codec_that_is_no_charset_is_an_unknown_charset(label):
    # codecs.lookup("undefined") succeeds and its decode raises a plain UnicodeError, which the
    # 8-bit header step did not catch; the others are bytes-to-bytes codecs or rewrite escapes.
    raw = (b"From: a@b.test\r\nSubject: caf\xe9\r\nContent-Type: text/plain; charset="
           + label.encode() + b"\r\n\r\nhi \\x41\r\n")
    mail = parse(raw)
    assert (mail.subject, mail.text) == ("café", "hi \\x41")
    assert f"unknown charset {label}" in mail.defects


def test_undefined_charset_on_one_part_and_an_8bit_header():
    raw = (b"From: Ren\xe9 <r@x.fr>\r\nSubject: caf\xe9\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n"
           b"--b\r\nContent-Type: text/plain; charset=undefined\r\n"
           b"Content-Disposition: attachment; filename=a.txt\r\n\r\nfile\r\n--b--\r\n")
    mail = parse(raw)
    assert (mail.subject, mail.from_.name, mail.text) == ("café", "René", "body")
    assert [a.data for a in mail.attachments] == [b"file"]


def test_rfc2231_name_in_a_codec_that_is_no_charset_keeps_the_body():
    raw = (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b"
           b"\r\n\r\n--b\r\nContent-Type: application/pdf\r\n"
           b"Content-Disposition: attachment; filename*=undefined''%E9.pdf\r\n\r\n%PDF-1.4\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nmy important words\r\n--b--\r\n")
    mail = parse(raw)
    assert mail.text == "my important words"
    assert [(a.filename, a.data) for a in mail.attachments] == [("é.pdf", b"%PDF-1.4")]
    assert not any(d.startswith("unreadable") for d in mail.defects)
