"""Outbound mail templates: branded, safe with hostile input, overridable, previewable."""

from __future__ import annotations

import argparse
import email
import email.policy
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.demo import seed_demo
from gateway.outbound.compose import compose
from gateway.outbound.preview import PreviewError, preview, register
from gateway.outbound.render import Brand, Renderer, kinds, override_root, render
from gateway.services import Services, build_services
from gateway.tokens import feedback_token, read_feedback_token, tracking_token
from storage.models import Agent, Attachment, Comment, Ticket, Workspace, utcnow
from tests.conftest import make_settings

CUSTOMER = "jane@customer.test"
URL = re.compile(r"https?://[^\s\"'<>]+")
KINDS = sorted(["customer/ticket_received", "customer/tracking_link", "customer/agent_reply",
                "customer/waiting_on_you",
                "customer/ticket_resolved", "agent/ticket_assigned", "agent/ticket_created",
                "agent/customer_replied"])


@pytest.fixture
def demo(tmp_path) -> Iterator[Services]:
    """The demo workspace `acme` and a plain second workspace `globex`, on SQLite."""
    svc = build_services(make_settings(tmp_path, f"sqlite:///{tmp_path / 'data' / 'workestra.db'}"))
    seed_demo(svc.store)
    with svc.store.tx() as s:
        s.add(Workspace(slug="globex", name="Globex", primary_color="#059669"))
    yield svc
    svc.close()


def acme(svc: Services) -> Workspace:
    ws = svc.store.workspace_by_slug("acme")
    assert ws is not None
    return ws


def contexts(svc: Services, ws: Workspace, *, subject: str = "Printer is on fire",
             name: str = "Jane Customer", full: bool = False) -> dict[str, dict]:
    """Per kind, what its caller passes (plus what Mailer.queue adds); `full` adds the optional
    attachments and history of an agent's reply."""
    base_url = svc.settings.public_url
    secret = svc.settings.secret_key
    ticket = Ticket(id=42, workspace_id=ws.id, number=42, contact_id=1, subject=subject,
                    description="Room 4, again.", priority="high", resolution="Fuser replaced.")
    agent = Agent(id=1, workspace_id=ws.id, name="Alex Agent", email="alex@acme.test")
    said = Comment(ticket_id=42, author_kind="customer", author_name=name, author_email=CUSTOMER,
                   body="Still smoking.")
    reply = Comment(ticket_id=42, author_kind="agent", author_name="Alex Agent",
                    body="Moved your queue to room 6.")
    tracking = (f"{base_url}/portal/{ws.slug}/tickets/TKT-0042?t="
                + tracking_token(secret, 42, CUSTOMER))
    feedback = f"{base_url}/portal/{ws.slug}/feedback?t=" + feedback_token(secret, 42, CUSTOMER)
    customer = {"customer_name": name, "tracking_url": tracking}
    to_agent = {"agent": agent, "customer_name": name, "customer_email": CUSTOMER}
    reply_ctx = {"customer_name": name, "agent": agent, "comment": reply, "tracking_url": tracking}
    if full:
        now = utcnow()
        reply_ctx["attachments"] = [Attachment(ticket_id=42, filename="checklist.pdf",
                                               content_type="application/pdf", size=48_213,
                                               sha256="0" * 64)]
        reply_ctx["history"] = [
            Comment(ticket_id=42, author_kind="customer", author_name=name, body=f"Message {i}",
                    created_at=now - timedelta(hours=5 - i)) for i in range(1, 5)]
    per_kind = {
        "customer/ticket_received": customer,  # intake._confirm
        "customer/tracking_link": customer,  # portal.tracking._queue_link
        "customer/agent_reply": reply_ctx,
        "customer/ticket_resolved": {"customer_name": name, "feedback_url": feedback},
        "customer/waiting_on_you": {**customer, "agent": agent, "question": reply},
        "agent/ticket_assigned": to_agent,  # intake._notify
        "agent/ticket_created": to_agent,
        "agent/customer_replied": {**to_agent, "comment": said, "reopened": True},
    }
    shared = {"brand": Brand.of(ws, base_url), "ticket": ticket, "reference": ticket.reference}
    return {kind: {**shared, **ctx} for kind, ctx in per_kind.items()}


def test_every_built_in_kind_is_covered_here(demo):
    assert set(kinds()) == set(KINDS) == set(contexts(demo, acme(demo)))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_both_parts_branded_for_the_demo_workspace(demo, kind):
    ws = acme(demo)
    out = render(kind, contexts(demo, ws)[kind])
    assert out.subject.startswith("[TKT-0042] ")
    assert "TKT-0042" in out.text and "TKT-0042" in out.html
    assert "Acme Support" in out.text and "Acme Support" in out.html
    assert "#7c3aed" in out.html  # the workspace colour, not the default blue
    assert "#2563eb" not in out.html
    # dark mode: declared, and a block for clients that read <style>
    assert '<meta name="color-scheme" content="light dark">' in out.html
    assert 'name="supported-color-schemes"' in out.html
    assert "@media (prefers-color-scheme: dark)" in out.html
    # the text part stands alone: no markup in it
    assert not re.search(r"</?(p|div|a|table|br)\b", out.text)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "customer/tracking_link"])
def test_subjects_carry_reference_and_ticket_subject(demo, kind):
    out = render(kind, contexts(demo, acme(demo))[kind])
    assert out.subject.startswith("[TKT-0042]") and "Printer is on fire" in out.subject


def test_customer_mails_carry_their_link(demo):
    ctx = contexts(demo, acme(demo), full=True)
    for kind in ("customer/ticket_received", "customer/tracking_link", "customer/agent_reply"):
        out = render(kind, ctx[kind])
        assert ctx[kind]["tracking_url"] in out.text
        assert f'href="{ctx[kind]["tracking_url"]}"' in out.html and "Track Ticket" in out.html


def test_agent_reply_shows_reply_attachments_and_recent_history_below_a_line(demo):
    out = render("customer/agent_reply", contexts(demo, acme(demo), full=True)[
        "customer/agent_reply"])
    text = out.text
    assert "Alex Agent" in text and "Moved your queue to room 6." in text
    assert "checklist.pdf (47.1 KB)" in text  # 48,213 bytes
    assert "checklist.pdf" in out.html and "(47.1 KB)" in out.html
    line = text.index("Recent history")
    assert text.index("Moved your queue") < line < text.index("> Message 4")
    # the last three earlier messages, newest first; the oldest is left out
    assert text.index("> Message 4") < text.index("> Message 3") < text.index("> Message 2")
    assert "Message 1" not in text and "Message 1" not in out.html
    assert "Recent history" in out.html


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 bytes"), (1, "1 byte"), (15, "15 bytes"), (1023, "1023 bytes"), (1024, "1.0 KB"),
    (1229, "1.2 KB"), (1_048_524, "1023.9 KB"), (1_048_575, "1.0 MB"),
    (int(3.4 * 1024 * 1024), "3.4 MB"), (10 * 1024 * 1024, "10.0 MB")])
def test_one_helper_writes_file_sizes_in_mail_and_on_portal_pages(size, shown):
    from portal.pages import _env as portal_env

    mail = Renderer().environment().from_string(
        '{% from "_file_size.j2" import file_size %}{{ file_size(n) }}')
    portal = portal_env.from_string(
        '{% from "mail/_file_size.j2" import file_size %}{{ file_size(n) }}')
    assert mail.render(n=size) == portal.render(n=size) == shown


def test_a_small_attachment_is_not_zero_kb_in_the_agents_reply(demo):
    ctx = contexts(demo, acme(demo), full=True)["customer/agent_reply"]
    ctx["attachments"][0].size = 15
    out = render("customer/agent_reply", ctx)
    assert "checklist.pdf (15 bytes)" in out.text and "(15 bytes)" in out.html
    assert "0.0 KB" not in out.text and "0.0 KB" not in out.html


def test_recent_history_says_you_the_same_way_in_every_entry_and_part(demo):
    ctx = contexts(demo, acme(demo), full=True)["customer/agent_reply"]
    for m in ctx["history"]:
        m.author_name = ""  # a customer known only by address
    ctx["history"][-1].created_at = None  # an entry without a date
    out = render("customer/agent_reply", ctx)
    said = re.findall(r"^(\S+) wrote\b[^\n]*:$", out.text, re.MULTILINE)
    assert said == ["You", "You", "You"], out.text
    assert "you wrote" not in out.text and "On you" not in out.text
    assert "You wrote:\n> Message 4" in out.text  # undated
    assert re.search(r"You wrote on \d\d \w{3} \d{4} \d\d:\d\d:\n> Message 3", out.text)
    assert "you" not in re.sub(r"(?s).*Recent history", "", out.html).replace("your", "")


def test_agent_reply_without_attachments_or_history_has_neither_section(demo):
    out = render("customer/agent_reply", contexts(demo, acme(demo))["customer/agent_reply"])
    assert "Attachments" not in out.text and "Recent history" not in out.text
    assert "Recent history" not in out.html


def test_resolved_mail_has_rate_button_with_a_seven_day_feedback_link(demo):
    ctx = contexts(demo, acme(demo))["customer/ticket_resolved"]
    out = render("customer/ticket_resolved", ctx)
    assert out.subject == "[TKT-0042] Resolved: Printer is on fire"
    assert "Fuser replaced." in out.text and "Fuser replaced." in out.html
    m = re.search(r'<a href="([^"]+)"[^>]*>Rate Your Experience</a>', out.html)
    assert m and m.group(1) == ctx["feedback_url"]
    assert ctx["feedback_url"] in out.text and "7 days" in out.text
    token = m.group(1).split("/portal/acme/feedback?t=", 1)[1]
    assert read_feedback_token(demo.settings.secret_key, token) == (42, CUSTOMER)


HOSTILE_NAME = "Eve <script>alert(1)</script>\r\nBcc: victim@example.test"
HOSTILE_SUBJECT = "Help <script>alert(2)</script>\r\nBcc: victim@example.test\nX-Evil: 1"


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_name_and_subject_are_escaped_in_html_and_cannot_add_headers(demo, kind):
    ws = acme(demo)
    out = render(kind, contexts(demo, ws, subject=HOSTILE_SUBJECT, name=HOSTILE_NAME)[kind])
    assert "<script" not in out.html
    assert "\r" not in out.subject and "\n" not in out.subject
    msg = compose(out, from_name=ws.display_name, from_address="support@acme.test",
                  to_name=HOSTILE_NAME, to_address=CUSTOMER, message_id="x@acme.test",
                  loop_marker="workestra-test")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    # (a long subject is folded right after "Subject:"; unfolding leaves a leading space)
    assert parsed["Subject"].strip().startswith("[TKT-0042]")
    if "Help" in out.subject:
        assert "Bcc: victim@example.test" in parsed["Subject"]  # kept as text, on one line
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in out.html


@pytest.mark.parametrize("kind", KINDS)
def test_html_loads_nothing_remote_and_links_only_to_our_pages(demo, kind):
    ws = acme(demo)
    ctx = contexts(demo, ws, full=True)[kind]
    out = render(kind, ctx)
    brand = ctx["brand"]
    assert brand.logo_url == "http://127.0.0.1:8000/static/acme-logo.svg"
    assert f'src="{brand.logo_url}"' in out.html
    allowed = {brand.logo_url, ctx.get("tracking_url"), ctx.get("feedback_url")}
    portal = f"{demo.settings.public_url}/portal/acme/"
    for url in URL.findall(out.html):
        assert url in allowed or url.startswith(portal), url
    assert re.findall(r'src="([^"]+)"', out.html) == [brand.logo_url]
    for remote in ("<link", "@import", "url(", "<script", "<iframe"):
        assert remote not in out.html


def test_unsafe_brand_colour_and_logo_are_not_put_into_the_html(demo):
    ws = Workspace(slug="bad", name="Bad", primary_color="red;background:url(http://x.test/p)",
                   logo_url="javascript:alert(1)")
    ctx = contexts(demo, ws)["customer/ticket_received"]
    out = render("customer/ticket_received", ctx)
    assert "x.test" not in out.html and "javascript:" not in out.html
    assert "#2563eb" in out.html


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_one_workspace_overrides_one_subject_and_another_keeps_the_built_in(demo, tmp_path):
    root = tmp_path / "overrides"
    renderer = Renderer(root)
    acme_ctx = contexts(demo, acme(demo))["customer/ticket_received"]
    before = renderer.render("customer/ticket_received", acme_ctx, workspace="acme")
    assert before.subject == "[TKT-0042] Printer is on fire"

    _write(root / "acme" / "email" / "customer" / "ticket_received.subject.j2",
           "{{ brand.name }} is on it\r\n [{{ reference }}]")
    after = renderer.render("customer/ticket_received", acme_ctx, workspace="acme")
    assert after.subject == "Acme Support is on it [TKT-0042]"  # no restart needed, one line
    assert after.text == before.text  # the parts not overridden stay built-in
    assert after.html.replace(after.subject, "") == before.html.replace(before.subject, "")

    globex = demo.store.workspace_by_slug("globex")
    globex_ctx = contexts(demo, globex)["customer/ticket_received"]
    other = renderer.render("customer/ticket_received", globex_ctx, workspace="globex")
    assert other.subject == "[TKT-0042] Printer is on fire"
    assert "Globex" in other.html and "#059669" in other.html


def test_overridden_html_is_autoescaped_and_can_reuse_the_layout(demo, tmp_path):
    root = tmp_path / "overrides"
    _write(root / "acme" / "email" / "customer" / "tracking_link.html.j2",
           '{% extends "_layout.html.j2" %}{% block body %}<p>Custom for {{ customer_name }}'
           "</p>{% endblock %}")
    ctx = contexts(demo, acme(demo), name="<b>Jane</b>")["customer/tracking_link"]
    out = Renderer(root).render("customer/tracking_link", ctx, workspace="acme")
    assert "<p>Custom for &lt;b&gt;Jane&lt;/b&gt;</p>" in out.html
    assert "#7c3aed" in out.html and "prefers-color-scheme: dark" in out.html
    # a slug that is not a plain name never reaches the file system
    assert Renderer(root).override_dir("../acme") is None


def _parts(eml: Path) -> tuple[email.message.EmailMessage, str, str]:
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    # an .eml holds CRLF lines, as on the wire; the parts' text is compared with LF
    return (msg, plain.get_content().replace("\r\n", "\n"),  # type: ignore[union-attr]
            html.get_content().replace("\r\n", "\n"))  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", KINDS)
def test_preview_writes_an_eml_with_text_and_html_parts(services, tmp_path, kind):
    out = tmp_path / "preview"
    eml, html = preview(kind, "acme", services.settings, out)
    assert eml == out / (kind.replace("/", "-").replace("_", "-") + ".eml")
    assert html == eml.with_suffix(".html")
    msg, text, html_part = _parts(eml)
    assert msg["Subject"].startswith("[TKT-0042] ")
    assert msg["From"].addresses[0].addr_spec == "support@acme.test"
    assert "Acme Support" in text and "TKT-0042" in text
    assert html.read_text() == html_part and "#7c3aed" in html_part
    if kind == "customer/agent_reply":
        assert "fire-safety-checklist.pdf" in text and "Recent history" in text


def test_preview_of_an_unknown_workspace_lists_the_known_ones(services, tmp_path):
    with pytest.raises(PreviewError, match="no workspace 'nope'.*acme"):
        preview("customer/agent_reply", "nope", services.settings, tmp_path)
    with pytest.raises(PreviewError, match="customer/agent_reply"):
        preview("customer/nonsense", "acme", services.settings, tmp_path)


def test_preview_command_uses_the_workspace_override(demo, tmp_path, monkeypatch, capsys):
    for name in ("DATABASE_URL", "WORKESTRA_DATABASE_URL", "WORKESTRA_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    data = demo.settings.data_dir
    _write(override_root(data) / "acme" / "email" / "customer" / "ticket_resolved.subject.j2",
           "All done: {{ ticket.subject }} [{{ reference }}]")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    for slug, expected in (("acme", "All done: Printer is on fire [TKT-0042]"),
                           ("globex", "[TKT-0042] Resolved: Printer is on fire")):
        args = parser.parse_args(["mail", "preview", "customer-ticket-resolved", "--workspace",
                                  slug, "--out", str(out / slug), "--data-dir", str(data)])
        assert args.func(args) == 0
        printed = capsys.readouterr().out.split()
        assert printed == [str(out / slug / "customer-ticket-resolved.eml"),
                           str(out / slug / "customer-ticket-resolved.html")]
        msg, text, _ = _parts(Path(printed[0]))
        assert msg["Subject"] == expected
        assert "Rate your experience" in text and "/feedback?t=" in text
