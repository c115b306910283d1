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
_DAEMON = re.compile(r"^(?:mailer-daemon|mail-daemon|postmaster|mailerdaemon)(?:@|$)", re.I)
# Non-delivery subjects; only trusted from a sender that looks like a mail system.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:ed|able)|returned mail|mail delivery (?:failed|failure|warning|status)"
    r"|delivery (?:status notification|failure|failed|notification|report|warning)"
    r"|non[- ]?delivery|failure notice|mail could not be delivered|permanent delivery failure"
    r"|warning: .*user unknown|unzustellbar|nicht zustellbar|non remis|échec de la remise"
    r"|no se puede entregar|non recapitabile|onbestelbaar|kan niet worden bezorgd)",
    re.IGNORECASE,
)
_SYSTEM_SENDER = re.compile(
    r"daemon|postmaster|mail[ ._-]?delivery|system|admin|antivirus|smtp|mailer|gateway|imss"
    r"|bounce|exchange",
    re.IGNORECASE,
)


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


def _mailer_daemon(mail: ParsedMail, ctx: _Context) -> bool:
    if mail.from_ is not None:
        return bool(_DAEMON.match(mail.from_.address))
    return bool(re.search(r"mailer-daemon|postmaster", mail.header("From"), re.I))


def _bounce_subject(mail: ParsedMail, ctx: _Context) -> bool:
    sender = mail.from_
    who = f"{sender.name} {sender.address}" if sender else mail.header("From")
    return bool(_BOUNCE_SUBJECT.match(mail.subject or "")) and bool(_SYSTEM_SENDER.search(who))


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
    return bool(_OOO_SUBJECT.match(mail.subject or ""))


def _list_id(mail: ParsedMail, ctx: _Context) -> bool:
    return bool(mail.header("List-Id"))  # RFC 2919


def _list_unsubscribe(mail: ParsedMail, ctx: _Context) -> bool:
    """RFC 2369 List-Unsubscribe alone is sent by many one-to-one senders; with Precedence: list
    it is list traffic."""
    return bool(mail.header("List-Unsubscribe")) and _precedence("list")(mail, ctx)


# Checked in this order; the highest outcome among the hits wins (see _PRIORITY).
RULES: tuple[Rule, ...] = (
    Rule("x-loop", "loop", _x_loop),
    Rule("own-message-id", "loop", _own_message_id),
    Rule("own-address", "loop", _own_address),
    Rule("dsn-report", "bounce", _dsn_report),
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
