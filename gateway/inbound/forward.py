"""Find who originally wrote a mail that an agent forwarded to the support address."""

from __future__ import annotations

import re

from gateway.inbound.mail import Address, ParsedMail
from gateway.inbound.parse import parse

# Subject prefixes clients add on forward (en, de, fr, es/pt, nl, it, fi/sv/da/no, pl, tr, ...).
_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:(?:re|aw|sv|vs|antw)\s*:\s*)*"
    r"(?:fwd?|fw|wg|tr|rv|doorst|vs|vb|vl|enc|i|rif|reenv|pd|wtg|pfw|fs|ps|ilt|İlt|továbbítás"
    r"|továbbított|preposlano|přeposlat|pres|prosl|пересл|转发|轉寄|転送|videresend)\s*:",
    re.IGNORECASE,
)
# Lines that open a forwarded block, in the languages the big clients ship.
_FORWARD_MARKER = re.compile(
    r"^\s*>?\s*[-_=*]*\s*(?:forwarded message|original message|weitergeleitete nachricht"
    r"|ursprüngliche nachricht|message transféré|message d'origine|mensaje reenviado"
    r"|mensaje original|messaggio inoltrato|messaggio originale|doorgestuurd bericht"
    r"|oorspronkelijk bericht|vidarebefordrat meddelande|videresendt (?:meddelelse|melding)"
    r"|videresendt besked|välitetty viesti|edelleenlähetetty viesti|alkuperäinen viesti"
    r"|mensagem encaminhada|mensagem original|wiadomość przekazana|przekazana wiadomość"
    r"|přeposlaná zpráva|preposlaná správa|přeposlaná zpráva|továbbított üzenet"
    r"|proslijeđena poruka|mesaj redirecționat|mesaj transmis|iletilen ileti|iletilmiş ileti"
    r"|edastatud kiri|пересылаемое сообщение|переслане повідомлення|begin forwarded message"
    r"|anfang der weitergeleiteten nachricht|début du message réexpédié"
    r"|inizio messaggio inoltrato|comienzo del mensaje reenviado|begin doorgestuurd bericht"
    r"|začátek přeposílané zprávy|początek przekazywanej wiadomości|videresendt e-mail"
    r"|vidarebefordrat mejl|välitetty viesti alkaa|továbbított levél|mesaj redirecționat"
    r"|iletilen mesaj|початок пересланого повідомлення|začiatok preposlanej správy"
    r"|início da mensagem reencaminhada|inicio del mensaje reenviado|forwarded email)"
    r"\s*[-_=*:]*",
    re.IGNORECASE,
)
_FROM_KEY = re.compile(
    r"^\s*>?\s*[*_]*(?:from|von|de|da|van|från|fra|od|от|lähettäjä|feladó|kimden|gönderen"
    r"|expéditeur|mittente|remitente|remetente|nadawca|saatja|від|de la|発信者|差出人|发件人"
    r"|寄件者)[*_]*\s*[:：][*_]*\s*(?P<value>.+)$",
    re.IGNORECASE,
)
_WROTE = re.compile(
    r"(?:wrote|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|skrev|kirjoitti|napisał"
    r"|napsal|napísal|írta|yazdı|написал|написав|a scris|kirjutas|je napisao)",
    re.IGNORECASE,
)
_ANGLE = re.compile(
    r"(?P<before>[^<\[]*)[<\[](?:mailto:)?(?P<addr>[^<>\[\]\s]+@[^<>\[\]\s]+?)"
    r"(?:<mailto:[^>]*>)?[>\]]"
)
_BARE = re.compile(r"(?:mailto:)?(?P<addr>[\w.+'-]+@[\w-]+(?:\.[\w-]+)+)")
_DATEISH = re.compile(r"\d{1,4}[./:-]\d{1,2}|\b\d{4}\b|\d{1,2}:\d{2}")


def original_sender(mail: ParsedMail) -> Address | None:
    """The original From of a forwarded mail, or None when this is not a forward.

    A forward is an attached message/rfc822 from someone else, or a forwarded-message block
    in the body that is marked as one (a marker line, a forward subject prefix, or nothing
    written above it). A quoted reply is not a forward.
    """
    attached = _from_attached_message(mail)
    if attached is not None:
        return attached
    lines = mail.text.replace("\r\n", "\n").split("\n")
    subject_says = bool(_FORWARD_SUBJECT.match(mail.subject or ""))
    for i, line in enumerate(lines):
        if _FORWARD_MARKER.match(line) or _FROM_KEY.match(line) or _is_attribution(line):
            nothing_above = not any(x.strip().strip(">").strip() for x in lines[:i])
            if not (_FORWARD_MARKER.match(line) or subject_says or nothing_above):
                return None  # a quoted reply's header, not a forward
            found = _sender_in_block(lines[i : i + 12])
            if found is not None:
                return found
    return None


def _from_attached_message(mail: ParsedMail) -> Address | None:
    for part in mail.attachments:
        if part.content_type != "message/rfc822":
            continue
        inner = parse(part.data).from_
        if inner is not None and (mail.from_ is None or inner.address != mail.from_.address):
            return inner
    return None


def _is_attribution(line: str) -> bool:
    text = line.strip().lstrip("> ")
    return bool(_WROTE.search(text)) and "@" in text and text.endswith((":", "：")) and bool(
        _DATEISH.search(text)
    )


def _sender_in_block(block: list[str]) -> Address | None:
    """The From field of a forwarded header block, or the person named in an attribution."""
    for line in block:
        match = _FROM_KEY.match(line)
        if match:
            return _address(match.group("value"))
        if _is_attribution(line):
            return _address(line, attribution=True)
    # Yahoo puts the whole header block on the marker line: "----- Forwarded ----- From: ..."
    joined = " ".join(block[:2])
    inline = re.search(r"(?:from|von|de|od|от)\s*:\s*(.+)", joined, re.IGNORECASE)
    return _address(inline.group(1)) if inline else None


def _address(value: str, *, attribution: bool = False) -> Address | None:
    value = value.strip()
    angle = _ANGLE.search(value)
    if angle:
        return Address(name=_clean_name(angle.group("before"), attribution),
                       address=angle.group("addr").lower())
    bare = _BARE.search(value)
    if not bare:
        return None
    before = value[: bare.start()]
    return Address(name=_clean_name(before, attribution), address=bare.group("addr").lower())


def _clean_name(text: str, attribution: bool) -> str:
    """A display name from the text before an address; attributions carry dates and verbs."""
    quoted = re.findall(r"\"([^\"]+)\"", text)
    if quoted:
        return quoted[-1].strip()
    if attribution:
        verb = list(_WROTE.finditer(text))
        if verb:
            text = text[verb[-1].end() :]
        text = text.rsplit(",", 1)[-1]
        text = re.sub(r"^\s*(?:on|am|le|el|il|op|den|em|dne|dnia)\b", "", text, flags=re.I)
    name = text.replace("\ufeff", "").strip().strip("'\"*«»“”").strip()
    return "" if "@" in name or _DATEISH.search(name) else name
