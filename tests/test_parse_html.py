"""HTML mail: readable text for the ticket, and HTML an agent can open without running anything
the sender put there."""

from __future__ import annotations

from gateway.inbound.html_text import sanitise_html
from gateway.inbound.parse import parse

HOSTILE = (
    '<html><head><title>Newsletter</title><style>p { color: red }</style>'
    "<script>steal(document.cookie)</script></head>"
    '<body onload="track()"><!--[if mso]>outlook only<![endif]-->'
    '<p onclick="evil()" style="background:url(https://tracker.example/bg.png)">Hello,</p>'
    '<p>Read <a href="https://x.org/faq" target="_blank">the FAQ</a> or '
    '<a href="javascript:alert(1)">click here</a> or <a href="JaVaScRiPt:alert(2)">here</a>.</p>'
    '<img src="cid:logo@acme" alt="logo"><img src="https://tracker.example/pixel.gif">'
    '<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot">'
    '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">'
    '<img src="x" onerror="alert(3)"><iframe src="https://evil.example"></iframe>'
    '<form action="https://evil.example"><input name="password"></form>'
    '<a href="data:text/html,<script>alert(4)</script>">data link</a>'
    "<table><tr><td>Order</td><td>42</td></tr></table></body></html>"
)


def _html_mail(html: str) -> bytes:
    return ("From: a@b.c\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n" + html).encode()


def test_html_only_mail_becomes_readable_text_with_links():
    mail = parse(_html_mail(HOSTILE))
    assert "Hello," in mail.text and "the FAQ" in mail.text
    assert "https://x.org/faq" in mail.text  # the link target stays readable
    assert "Order" in mail.text and "42" in mail.text
    for hidden in ("color: red", "steal(", "cookie", "Newsletter", "outlook only", "track()"):
        assert hidden not in mail.text


def test_sanitised_html_runs_nothing_and_loads_nothing_remote():
    safe = parse(_html_mail(HOSTILE)).html_safe
    assert safe is not None
    lowered = safe.lower()
    for banned in ("<script", "steal(", "onload", "onclick", "onerror", "javascript:", "<iframe",
                   "<form", "<input", "<style", "tracker.example", "evil.example", "svg+xml",
                   "data:text/html", "<!--"):
        assert banned not in lowered, banned
    assert '<img src="cid:logo@acme" alt="logo">' in safe  # the mail's own image stays
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in safe
    assert '<a href="https://x.org/faq" rel="noopener noreferrer nofollow">the FAQ</a>' in safe
    assert "<td>Order</td>" in safe


def test_raw_html_is_kept_apart_from_the_safe_copy():
    mail = parse(_html_mail(HOSTILE))
    assert mail.html is not None and "<script>" in mail.html  # for replay; never shown as is
    assert mail.html_safe is not None and "<script>" not in mail.html_safe


def test_plain_mail_has_no_html():
    mail = parse(b"From: a@b.c\r\n\r\nplain only")
    assert mail.html is None and mail.html_safe is None


def test_alternative_keeps_plain_text_and_sanitises_the_html():
    raw = (b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"'
           b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain words\r\n"
           b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b'<p onmouseover="x()">html <b>words</b></p>\r\n--b--\r\n')
    mail = parse(raw)
    assert mail.text == "plain words"
    assert mail.html_safe == "<p>html <b>words</b></p>"


def test_sanitise_html_is_usable_on_its_own():
    assert sanitise_html('<a href="mailto:help@acme.test">mail us</a>') == (
        '<a href="mailto:help@acme.test" rel="noopener noreferrer nofollow">mail us</a>')
    assert sanitise_html('<a href="/relative">x</a>') == (
        '<a rel="noopener noreferrer nofollow">x</a>')
    assert sanitise_html("<p>a<script>b</script>c</p>") == "<p>ac</p>"
    assert sanitise_html("") == ""
