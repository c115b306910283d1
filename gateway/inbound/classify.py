"""Decide whether a mail is a customer's, an auto-reply, a bounce, list mail or our own loop."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway.inbound.mail import Classification, ParsedMail

# Out-of-office subjects, anchored at the start so "Out of office hours?" from a customer is safe.
# Group "tag" holds a leading "[list]" or "[TKT-0042]", "prefixes" any Re:/AW:/Fwd: after it.
_OOO_SUBJECT = re.compile(
    r"^\s*(?P<tag>\[[^\]]*\]\s*)?(?P<prefixes>(?:(?:re|aw|fw|fwd|wg|tr|sv|vs|antw)\s*:\s*)*)(?:"
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse"
    r"|i am (?:currently )?(?:out of|away from) (?:the|my) office|away from (?:the|my) office"
    r"|i['’]?m (?:currently )?(?:out of (?:the |my )?office|away(?: from (?:the|my) office)?)"
    r"|i am (?:currently )?away|away"
    r"|on (?:vacation|holiday|leave)|abwesenheit(?:snotiz)?|automatische antwort|abwesend"
    r"|(?:ich bin (?:derzeit |zurzeit |aktuell )?)?(?:nicht im büro|im urlaub)|urlaub"
    r"|außer haus|réponse automatique|absence du bureau|absente? du bureau"
    r"|je suis (?:actuellement )?absente?|respuesta automática|respuesta automatica"
    r"|fuera de la oficina"
    r"|risposta automatica|fuori (?:sede|ufficio)|assente|automatisch antwoord"
    r"|afwezig(?:heid)?|niet op kantoor|resposta automática|resposta automatica"
    r"|fora do escritório|ausente|automatiskt svar|autosvar|automatisk svar|frånvaro"
    r"|fraværende|ikke på kontoret|automaattinen vastaus|poissa toimistolta"
    r"|automatyczna odpowiedź|poza biurem|automatická odpověď|mimo kancelář"
    r"|автоматический ответ|нет на месте|в отпуске|自动回复|自動回覆|自動応答|不在"
    r"|otomatik yanıt|ofis dışında)"
    r"(?=\s*(?:[:\-–(]|$|until\b|till\b|bis\b|jusqu|hasta\b|fino\b|tot\b|até\b))",
    re.IGNORECASE,
)
# What a responder's own text says, first thing in its body: "I am out of the office until",
# "Ich bin bis ... nicht im Büro". Present tense or future, first person: a customer writes
# "I was on vacation" about the past.
_RESPONDER_TEXT = re.compile(
    r"\bi(?: am|['’]m) (?:currently |now )?(?:out of (?:the |my )?office|away\b|absent\b"
    r"|on (?:annual |parental |maternity |paternity |sick |study )?(?:leave|vacation|holiday))"
    r"|\bi (?:will|shall) be (?:out of (?:the |my )?office|away|absent"
    r"|on (?:annual |parental |maternity |paternity |sick )?(?:leave|vacation|holiday))"
    r"|\b(?:limited|no) access to (?:my )?e-?mails?\b"
    r"|\bthis is an? (?:automatic(?:ally generated)?|auto(?:mated)?)[- ]?(?:reply|response|message)"
    r"|\bich bin (?:\S+ ){0,6}?(?:nicht im büro|abwesend|im urlaub|außer haus)"
    r"|\bje (?:suis|serai) (?:\S+ ){0,3}?absente?\b"
    r"|\b(?:estoy|estaré) (?:\S+ ){0,3}?(?:fuera de la oficina|ausente)"
    r"|\b(?:sono|sarò) (?:\S+ ){0,3}?(?:fuori (?:ufficio|sede)|assente)"
    r"|\bik ben (?:\S+ ){0,3}?(?:afwezig|niet op kantoor)"
    r"|\b(?:estou|estarei) (?:\S+ ){0,3}?(?:ausente|fora do escritório)"
    r"|\bjag är (?:\S+ ){0,3}?(?:ledig|borta|frånvarande)\b",
    re.IGNORECASE,
)
_RESPONDER_HEAD = 2000
_OUR_REFERENCE = re.compile(r"\bTKT-\d{4,9}\b", re.IGNORECASE)  # as in thread.py
_REPLY_WORD = re.compile(r"\b(?:re|aw|sv|vs|antw)\s*:", re.IGNORECASE)
_DAEMON = re.compile(r"^(?:mailer-daemon|mail-daemon|mailerdaemon)(?:@|$)", re.I)
_POSTMASTER = re.compile(r"^postmaster(?:@|$)", re.I)
# Non-delivery subjects; only trusted from a sender that looks like a mail system.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:ed|able)|returned mail|mail delivery (?:failed|failure|warning|status)"
    r"|delivery (?:status notification|failure|failed|notification|report|warning)"
    r"|non[- ]?delivery|failure notice|mail could not be delivered|permanent delivery failure"
    r"|warning: .*user unknown|unzustellbar|nicht zustellbar|non remis|échec de la remise"
    r"|no se puede entregar|non recapitabile|onbestelbaar|kan niet worden bezorgd)",
    re.IGNORECASE,
)
# Mail software's sender names. In the local part ("MAILER-DAEMON@", "mail-delivery@",
# "bounces+x@"): a customer's company name is not there. As a display name only the whole
# name counts: "Bounce Fitness" or "Mailer Dept" is a company. Postmaster is a role people
# answer from, so it needs a failure report (see _mailer_daemon).
_SYSTEM_LOCAL = re.compile(
    r"daemon|mail[._-]?delivery|smtp|antivirus|imss|^bounces?(?:$|[-+=._])"
    r"|system[._-]?administrator|microsoftexchange"
    r"|^mail[._-]?(?:system|server|service|gateway)(?:$|[-+=._])",
    re.IGNORECASE,
)
_SYSTEM_NAME = re.compile(
    r"\s*[\"']?\s*(?:mail delivery (?:subsystem|system|service)|mail(?:er)?[- ]?daemon"
    r"|microsoft outlook|microsoft exchange(?: server)?|system administrator"
    r"|mail (?:system|server|administrator)|mail delivery|internet mail delivery)"
    r"\s*[\"']?\s*",
    re.IGNORECASE,
)
# In a From that cannot be parsed (old Exchange's "Postmaster\\@x@x"), any such word counts.
_MAIL_SYSTEM = re.compile(
    r"daemon|postmaster|mail[ ._-]?delivery|mailer|smtp|antivirus|imss|bounce"
    r"|system[ ._-]?administrator|microsoft exchange|mail[ ._-]?(?:system|server|service|gateway)",
    re.IGNORECASE,
)
# Names a person or a shop may also have ("Office Admin", "Acme Systems", "Gateway Logistics"):
# with a non-delivery subject (also a parcel's) they need a mail server's report in the body.
_ROLE_SENDER = re.compile(
    r"system|admin|gateway|exchange|postmaster|mailer|bounce|smtp"
    r"|mail[ ._-]?(?:delivery|server|service)", re.IGNORECASE)
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
    r"|this is the mail system at host|non-delivery report|delivery status notification"
    # SMTP32, Domino, LSMTP, Exchange 5.5 and LLNL's responder, which say none of the above
    r"|invalid final delivery userid|^\s*undeliverable\s+to\s+\S+@|^delivery failed \d+ attempts"
    r"|\bwas not delivered to:\s*\S+@|not listed in (?:the )?domino directory|^error-for:"
    r"|encountered delivery problems|^original message follows\.?\s*$"
    r"|original message as received",
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
    """MAILER-DAEMON is never a person. Postmaster is a role people write from ("Question
    about invoice" from postmaster@smallco.example), so it counts only with a delivery-status
    part or a failure report in the body."""
    if _unreadable_from(mail):
        if re.search(r"mailer-?daemon", mail.header("From"), re.I):
            return True
        postmaster = bool(re.search(r"postmaster", mail.header("From"), re.I))
    else:
        assert mail.from_ is not None
        if _DAEMON.match(mail.from_.address):
            return True
        postmaster = bool(_POSTMASTER.match(mail.from_.address))
    status = "report-type=delivery-status" in mail.header("Content-Type").lower()
    return postmaster and (status or _dsn_report(mail, ctx) or _failure_text(mail))


def _bounce_subject(mail: ParsedMail, ctx: _Context) -> bool:
    """A non-delivery subject from mail software: a mail-system local part or display name,
    a null or mangled From or an RFC 3834 Auto-Submitted; a role or company name ("admin",
    "Bounce Fitness", "Mailer Dept", postmaster) needs a failure report too."""
    if not _BOUNCE_SUBJECT.match(mail.subject or ""):
        return False
    if _auto_submitted(mail, ctx):
        return True
    who = _sender_text(mail)
    if _unreadable_from(mail):
        if _MAIL_SYSTEM.search(who):
            return True
        if re.fullmatch(r"\s*(?:<\s*>)?\s*", mail.header("From")):
            return True
    else:
        assert mail.from_ is not None
        if (_SYSTEM_LOCAL.search(mail.from_.address.rpartition("@")[0])
                or _SYSTEM_NAME.fullmatch(mail.from_.name or "")):
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
    """An out-of-office subject: many responders send no header that says so, and one
    unclassified auto-reply opens a ticket and answers it. The pattern wants the words first
    and a colon, a dash, "until" or nothing after them, so a customer's "Out of office hours
    support?" or "I was out of office last week" is not one. A new mail may still start so
    ("On vacation - package lost"), so the words need corroboration: the mail answers one
    (In-Reply-To, References or "Re:" before the words; RFC 3834 §3.1.5 has responders set
    In-Reply-To), its body opens with a responder's text, or it carries Exchange's
    X-Auto-Response-Suppress."""
    match = _OOO_SUBJECT.match(mail.subject or "")
    if not match:
        return False
    if _OUR_REFERENCE.search(match.group("tag") or ""):
        # Words right after our own tag are the ticket's subject echoed back by a customer's
        # client ("[TKT-0042] On vacation - package lost"); a responder puts its words first.
        return False
    if mail.in_reply_to or mail.references or mail.header("In-Reply-To") \
            or mail.header("References"):
        return True
    if _REPLY_WORD.search(match.group("prefixes") or ""):
        return True
    if mail.header("X-Auto-Response-Suppress"):
        return True
    return bool(_RESPONDER_TEXT.search((mail.text or "")[:_RESPONDER_HEAD]))


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
