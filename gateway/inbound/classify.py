"""Decide whether a mail is a customer's, an auto-reply, a bounce, list mail or our own loop."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway.inbound.mail import Classification, ParsedMail

# Out-of-office subjects, anchored at the start so "Out of office hours?" from a customer is safe.
_OOO_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:(?:re|aw|fw|fwd|wg|tr|sv|vs|antw)\s*:\s*)*(?:"
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse"
    r"|i am (?:currently )?(?:out of|away from) (?:the|my) office|away from (?:the|my) office"
    r"|on (?:vacation|holiday|leave)|abwesenheitsnotiz|automatische antwort|abwesend"
    r"|nicht im büro|außer haus|réponse automatique|absence du bureau|absent du bureau"
    r"|je suis absent|respuesta automática|respuesta automatica|fuera de la oficina"
    r"|risposta automatica|fuori (?:sede|ufficio)|assente|automatisch antwoord"
    r"|afwezig(?:heid)?|niet op kantoor|resposta automática|resposta automatica"
    r"|fora do escritório|ausente|automatiskt svar|autosvar|automatisk svar|frånvaro"
    r"|fraværende|ikke på kontoret|automaattinen vastaus|poissa toimistolta"
    r"|automatyczna odpowiedź|poza biurem|automatická odpověď|mimo kancelář"
    r"|автоматический ответ|нет на месте|в отпуске|自动回复|自動回覆|自動応答|不在"
    r"|otomatik yanıt|ofis dışında)"
    r"(?=\s*(?:[:\-–(]|$|until|till|bis|jusqu|hasta|fino|tot|até|till))",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(?:mailer-daemon|mail-daemon|mailerdaemon)(?:@|$)", re.I)
_POSTMASTER = re.compile(r"^postmaster(?:@|$)", re.I)
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|vs|antw|odp|ynt|回复|答复)\s*:", re.I)
# Non-delivery subjects; only trusted from a sender that looks like a mail system.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:ed|able)|returned mail|mail delivery (?:failed|failure|warning|status)"
    r"|delivery (?:status notification|failure|failed|notification|report|warning)"
    r"|non[- ]?delivery|failure notice|mail could not be delivered|permanent delivery failure"
    r"|warning: .*user unknown|unzustellbar|nicht zustellbar|non remis|échec de la remise"
    r"|no se puede entregar|non recapitabile|onbestelbaar|kan niet worden bezorgd)",
    re.IGNORECASE,
)
# Names only mail software uses; enough with a non-delivery subject.
_MAIL_SYSTEM = re.compile(
    r"daemon|postmaster|mail[ ._-]?delivery|mailer|smtp|antivirus|imss|bounce"
    r"|system[ ._-]?administrator|microsoft exchange|mail[ ._-]?(?:system|server|service|gateway)",
    re.IGNORECASE,
)
# Names a person or a shop may also have ("Office Admin", "Acme Systems", "Gateway Logistics"):
# with a non-delivery subject (also a parcel's) they need a mail server's report in the body.
_ROLE_SENDER = re.compile(r"system|admin|gateway|exchange", re.IGNORECASE)
# What only a mail server's failure report says: SMTP replies with RFC 3463 status codes,
# RFC 3464 fields, and the stock phrases of Postfix, Exim, sendmail, qmail and Exchange.
_FAILURE_TEXT = re.compile(
    r"\b[245]\d\d[ -]#?[245]\.\d{1,3}\.\d{1,3}\b|\bsmtp (?:error|code)\b|remote host said"
    r"|^(?:final-recipient|diagnostic-code|reporting-mta):|user unknown|unknown user"
    r"|no such user|mailbox (?:unavailable|is full|full)|recipient address rejected"
    r"|(?:delivery to|could not be delivered to|did not reach) the following"
    r" (?:recipient|user|address)|could not deliver (?:the |your |this )?message"
    r"|following addresses had permanent|transcript of session|session transcript"
    r"|(?:your|the attached|the original) message (?:could not|was not|has not)"
    r" (?:be(?:en)? )?deliver"
    r"|this is the mail system at host|non-delivery report|delivery status notification",
    re.IGNORECASE | re.MULTILINE,
)
_HEAD = 4000  # how much of a body the text rules read: reports and notices say it first


@dataclass(frozen=True)
class _Context:
    own_addresses: frozenset[str]
    own_domains: frozenset[str]
    is_own_message_id: Callable[[str], bool]
    loop_header: str
    loop_value: str


@dataclass(frozen=True)
class Rule:
    """One named check; a hit puts the mail in `outcome` unless a higher one also hit."""

    name: str
    outcome: Classification
    check: Callable[[ParsedMail, _Context], bool]


def _values(mail: ParsedMail, name: str) -> list[str]:
    return [str(v).strip() for v in mail.headers.get_all(name, []) or []]


def _x_loop(mail: ParsedMail, ctx: _Context) -> bool:
    want = ctx.loop_value.strip().lower()
    return any(want and want in v.lower() for v in _values(mail, ctx.loop_header))


def _own_message_id(mail: ParsedMail, ctx: _Context) -> bool:
    """Our own Message-ID back as this mail's id: something re-sent our mail to us."""
    mid = mail.message_id
    if not mid:
        return False
    if mid.rpartition("@")[2].lower() in ctx.own_domains:
        return True
    try:
        return bool(ctx.is_own_message_id(mid))
    except Exception:
        return False


def _own_address(mail: ParsedMail, ctx: _Context) -> bool:
    return mail.from_ is not None and mail.from_.address in ctx.own_addresses


def _dsn_report(mail: ParsedMail, ctx: _Context) -> bool:
    """RFC 6522 multipart/report carrying an RFC 3464 delivery-status part."""
    ctype = mail.header("Content-Type").lower()
    if ctype.startswith("multipart/report") and "delivery-status" in ctype:
        return True
    return any(a.content_type == "message/delivery-status" for a in mail.attachments)


def _machine_report(mail: ParsedMail, ctx: _Context) -> bool:
    """Any other RFC 6522 report (RFC 8098 read receipts, RFC 5965 abuse reports): only
    software writes multipart/report, and a receipt must not open a ticket."""
    ctype = mail.header("Content-Type").lower()
    return ctype.startswith("multipart/report") and "delivery-status" not in ctype


def _sender_text(mail: ParsedMail) -> str:
    """The sender's name and local part (a customer's domain may well be "smtp-hosting"), or
    the raw From when parsing could not read an address from it."""
    if _unreadable_from(mail):
        return mail.header("From")
    assert mail.from_ is not None
    return f"{mail.from_.name} {mail.from_.address.rpartition('@')[0]}"


def _unreadable_from(mail: ParsedMail) -> bool:
    """No From address (RFC 5321 null "<>" or garbage such as "Postmaster\\@x@x")."""
    return mail.from_ is None or "@" not in mail.from_.address


def _failure_text(mail: ParsedMail) -> bool:
    return bool(_FAILURE_TEXT.search((mail.text or "")[:_HEAD]))


def _mailer_daemon(mail: ParsedMail, ctx: _Context) -> bool:
    """MAILER-DAEMON is never a person. Postmaster is a role people answer from, so a reply
    ("Re: ...") from it counts only when its body is a failure report."""
    if _unreadable_from(mail):
        if re.search(r"mailer-?daemon", mail.header("From"), re.I):
            return True
        postmaster = bool(re.search(r"postmaster", mail.header("From"), re.I))
    else:
        assert mail.from_ is not None
        if _DAEMON.match(mail.from_.address):
            return True
        postmaster = bool(_POSTMASTER.match(mail.from_.address))
    replying = bool(_REPLY_PREFIX.match(mail.subject or ""))
    return postmaster and (not replying or _failure_text(mail))


def _bounce_subject(mail: ParsedMail, ctx: _Context) -> bool:
    """A non-delivery subject from mail software: a mail-system name, a null From or an
    RFC 3834 Auto-Submitted; a role name ("admin", "system") needs a failure report too."""
    if not _BOUNCE_SUBJECT.match(mail.subject or ""):
        return False
    who = _sender_text(mail)
    if _MAIL_SYSTEM.search(who) or _auto_submitted(mail, ctx):
        return True
    if _unreadable_from(mail) and re.fullmatch(r"\s*(?:<\s*>)?\s*", mail.header("From")):
        return True
    return bool(_ROLE_SENDER.search(who)) and _failure_text(mail)


def _null_return_path(mail: ParsedMail, ctx: _Context) -> bool:
    """RFC 5321 §4.5.5 null reverse-path; RFC 3834 auto-replies use it too, so they win."""
    null = any(re.fullmatch(r"<\s*>", v) for v in _values(mail, "Return-Path"))
    return null and not _auto_submitted(mail, ctx)


def _auto_submitted(mail: ParsedMail, ctx: _Context) -> bool:
    """RFC 3834 §5: any Auto-Submitted value other than "no" marks an automatic message."""
    return any(v.split(";")[0].strip().lower() not in ("", "no") for v in
               _values(mail, "Auto-Submitted"))


def _present(name: str) -> Callable[[ParsedMail, _Context], bool]:
    def check(mail: ParsedMail, ctx: _Context) -> bool:
        return any(v.lower() not in ("no", "false", "0") for v in _values(mail, name))

    return check


def _precedence(*values: str) -> Callable[[ParsedMail, _Context], bool]:
    """RFC 2076 Precedence, never standardised but set by most autoresponders and lists."""

    def check(mail: ParsedMail, ctx: _Context) -> bool:
        return mail.header("Precedence").lower().strip("\"' ") in values

    return check


def _ooo_subject(mail: ParsedMail, ctx: _Context) -> bool:
    """An out-of-office subject alone: many responders send no header that says so, and one
    unclassified auto-reply opens a ticket and answers it. The pattern wants the words first
    and a colon, a dash, "until" or nothing after them, so a customer's "Out of office hours
    support?" or "I was out of office last week" is not one."""
    return bool(_OOO_SUBJECT.match(mail.subject or ""))


def _replies_to_us(mail: ParsedMail, ctx: _Context) -> bool:
    """In-Reply-To names a Message-ID we minted: someone answering our mail."""
    for mid in mail.in_reply_to:
        if mid.rpartition("@")[2].lower() in ctx.own_domains:
            return True
        try:
            if ctx.is_own_message_id(mid):
                return True
        except Exception:
            continue
    return False


def _list_id(mail: ParsedMail, ctx: _Context) -> bool:
    """RFC 2919 List-Id. A direct reply to our mail through a list or a corporate group
    (Google Groups, Mailman) is a person answering the ticket; robots there carry
    Auto-Submitted or Precedence and are caught above."""
    return bool(mail.header("List-Id")) and not _replies_to_us(mail, ctx)


def _list_unsubscribe(mail: ParsedMail, ctx: _Context) -> bool:
    """RFC 2369 List-Unsubscribe alone is sent by many one-to-one senders; with Precedence: list
    it is list traffic (unless it answers our mail, as for List-Id)."""
    return (bool(mail.header("List-Unsubscribe")) and _precedence("list")(mail, ctx)
            and not _replies_to_us(mail, ctx))


# Checked in this order; the highest outcome among the hits wins (see _PRIORITY).
RULES: tuple[Rule, ...] = (
    Rule("x-loop", "loop", _x_loop),
    Rule("own-message-id", "loop", _own_message_id),
    Rule("own-address", "loop", _own_address),
    Rule("dsn-report", "bounce", _dsn_report),
    Rule("machine-report", "auto_reply", _machine_report),
    Rule("mailer-daemon", "bounce", _mailer_daemon),
    Rule("null-return-path", "bounce", _null_return_path),
    Rule("bounce-subject", "bounce", _bounce_subject),
    Rule("auto-submitted", "auto_reply", _auto_submitted),
    Rule("x-autoreply", "auto_reply", _present("X-Autoreply")),
    Rule("x-autorespond", "auto_reply", _present("X-Autorespond")),
    Rule("precedence-bulk", "auto_reply", _precedence("bulk", "junk", "auto_reply")),
    Rule("ooo-subject", "auto_reply", _ooo_subject),
    Rule("list-id", "list", _list_id),
    Rule("list-unsubscribe", "list", _list_unsubscribe),
)
_PRIORITY: tuple[Classification, ...] = ("loop", "bounce", "auto_reply", "list")


def classify(
    mail: ParsedMail,
    *,
    own_addresses: Collection[str] = (),
    own_domains: Collection[str] = (),
    is_own_message_id: Callable[[str], bool] = lambda _: False,
    loop_header: str = "X-Loop",
    loop_value: str = "workestra",
) -> tuple[Classification, list[str]]:
    """The mail's class and the names of every rule that hit, so logs can say why.

    `own_domains` marks Message-IDs minted under our domains; senders at those domains
    (agents) are not loops.
    """
    ctx = _Context(
        own_addresses=frozenset(a.strip().lower() for a in own_addresses),
        own_domains=frozenset(d.strip().lower().lstrip("@") for d in own_domains),
        is_own_message_id=is_own_message_id,
        loop_header=loop_header,
        loop_value=loop_value,
    )
    hits: list[Rule] = []
    for rule in RULES:
        try:
            if rule.check(mail, ctx):
                hits.append(rule)
        except Exception:  # a rule that cannot read this mail has not hit
            continue
    outcomes = {rule.outcome for rule in hits}
    classification = next((c for c in _PRIORITY if c in outcomes), "normal")
    return classification, [rule.name for rule in hits]
