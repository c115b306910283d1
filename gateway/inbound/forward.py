"""Find who originally wrote a mail that an agent forwarded to the support address."""

from __future__ import annotations

import re

from gateway.inbound.mail import Address, ParsedMail
from gateway.inbound.parse import parse

# Subject prefixes clients add on forward (en, de, fr, es/pt, nl, it, fi/sv/da/no, pl, tr, ro
# ("Redir.:"), ...).
_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:(?:re|aw|sv|vs|antw)\s*:\s*)*"
    r"(?:fwd?|fw|wg|tr|rv|doorst|vs|vb|vl|enc|i|rif|reenv|pd|wtg|pfw|fs|ps|ilt|İlt|továbbítás"
    r"|továbbított|preposlano|přeposlat|pres|prosl|redir\.|пересл|转发|轉寄|転送|videresend)\s*:",
    re.IGNORECASE,
)
# Reply prefixes: under a reply, Outlook's "Original Message" line quotes, it does not forward.
_REPLY_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:re|aw|sv|antw|odp|ynt|vá|atb|отв|回复|答复)\s*(?:\[\d+\])?\s*:",
    re.IGNORECASE,
)
# A line's opening quote marks and rules, matched possessively: runs of blanks or dashes
# must not be re-split on every failed match (a 100 KB line of spaces).
_LEAD = r"^\s*+(?:>\s*+)?+[-_=*\s]*+"
# Lines that open a forwarded block, in the languages the big clients ship (Gmail, Outlook,
# Yahoo, Thunderbird, HubSpot separators and Apple Mail's "Begin forwarded message:").
_FORWARD_MARKER = re.compile(
    _LEAD + r"(?:forwarded message|original message|weitergeleitete nachricht"
    r"|ursprüngliche nachricht|message transféré|message transmis|message d'origine"
    r"|mensaje reenviado|mensaje original|messaggio inoltrato|messaggio originale"
    r"|doorgestuurd bericht|oorspronkelijk bericht|vidarebefordrat meddelande"
    r"|videresendt (?:meddelelse|melding)|videresendt besked|välitetty viesti"
    r"|edelleenlähetetty viesti|alkuperäinen viesti|mensagem encaminhada"
    r"|mensagem reencaminhada|mensagem original|wiadomość przekazana|przekazana wiadomość"
    r"|wiadomość przesłana dalej|treść przekazanej wiadomości|přeposlaná zpráva"
    r"|preposlaná správa|továbbított üzenet|proslijeđena poruka|mesaj redirec[țţ]ionat"
    r"|mesaj transmis|iletilen ileti|iletilmiş ileti|iletilmiş mesaj|edastatud kiri"
    r"|пересылаемое сообщение|перенаправленное сообщение|переслане повідомлення"
    r"|перенаправлене повідомлення|メッセージを転送|begin forwarded message"
    r"|anfang der weitergeleiteten nachricht|début du message réexpédié"
    r"|début du message transféré|inizio messaggio inoltrato|comienzo del mensaje reenviado"
    r"|begin doorgestuurd bericht|začátek přeposílané zprávy"
    r"|początek przekazywanej wiadomości|videresendt e-mail|vidarebefordrat mejl"
    r"|välitetty viesti alkaa|továbbított levél|iletilen mesaj|ileti başlangıcı"
    r"|start på videresendt besked|începe mesajul redirec[țţ]ionat|započni proslijeđenu poruku"
    r"|начало переадресованного сообщения|початок листа, що пересилається"
    r"|початок пересланого повідомлення|začiatok preposlanej správy"
    r"|início da mensagem (?:re)?encaminhada|inicio del mensaje reenviado|forwarded email)"
    r"\s*[-_=*:]*",
    re.IGNORECASE,
)
# Markers that Outlook and others also put over a reply's quote.
_ORIGINAL = re.compile(
    r"original message|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht|alkuperäinen viesti|mensagem original",
    re.IGNORECASE,
)
# "From" as clients label it in a forwarded header block (hr "Šalje", ro "Expeditorul",
# uk/ru Apple Mail "Від кого"/"От кого", el "Από", ...).
_FROM_WORDS = (
    r"from|von|de|da|van|från|fra|od|от|от кого|від|від кого|lähettäjä|feladó|kimden"
    r"|gönderen|expéditeur|mittente|remitente|remetente|nadawca|saatja|de la|expeditorul"
    r"|šalje|από|発信者|差出人|发件人|寄件者"
)
_FROM_KEY = re.compile(
    rf"^\s*+(?:>\s*+)?+[*_]*(?:{_FROM_WORDS})[*_]*\s*[:：][*_]*\s*(?P<value>.+)$",
    re.IGNORECASE,
)
# Yahoo runs the whole header block into the marker line: "----- Forwarded ----- From: ...".
_INLINE_FROM = re.compile(rf"(?<!\w)(?:{_FROM_WORDS})\s*[:：]\s*(?P<value>.+)", re.IGNORECASE)
# A From value that wrapped: its address alone on the next line ("From: Jane Customer" and
# then "<jane@example.com>"). Only a real address: Outlook's inline image reference
# "[cid:image001.png@01D9ABCD.12345670]" can stand on that line too, so no cid:, and the domain
# must end in a dot and a TLD of letters.
_WRAPPED_ADDRESS = re.compile(
    r"^\s*+(?:>\s*+)?+(?P<value>[<\[(]\s*+(?:mailto:)?+(?!(?i:cid):)[^\s<>\[\]()@]++@"
    r"(?:[^\W_][\w-]*+\.)++[^\W\d_]{2,}+\s*+[>\])])\s*+$"
)
# Any header field line ("Sent: ...", "Másolatot kap: ...", "Date : ..."); bounded, so cheap.
_HEADER_FIELD = re.compile(
    r"^\s*+(?:>\s*+)?+[*_]*[^\W\d_][\w-]{0,20}(?: [\w-]{1,20})?[*_]*\s*[:：]\s*\S"
)
_WROTE = re.compile(
    r"(?:wrote|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|skrev|kirjoitti|napisał"
    r"|napsal|napísal|írta|yazdı|написал|написав|a scris|kirjutas|je napisao)",
    re.IGNORECASE,
)
# A bracketed address: <a@b>, [mailto:a@b], Outlook's <a@b<mailto:a@b>>, "< a@b >". Possessive
# blanks: two optional runs of spaces around the mailto must not re-split a long run of blanks
# on every failed match ("<a@b" and 60 000 spaces). No cid: image reference.
_ANGLE = re.compile(
    r"[<\[]\s*+(?:mailto:)?+(?!(?i:cid):)(?P<addr>[^<>\[\]\s@]++@[^<>\[\]\s]+?)"
    r"\s*+(?:<mailto:[^<>]*+>)?+\s*+[>\]]"
)
# Starts only where an address's local part can start, so a long word is scanned once.
_BARE = re.compile(r"(?<![\w.+'-])(?P<addr>[\w.+'-]+@[\w-]+(?:\.[\w-]+)+)")
# The markdown link html_to_text makes of a mailto: anchor: "[Jane](mailto:jane@x.com)".
_MAILTO_LINK = re.compile(r"\[(?P<text>[^\[\]]*)\]\(mailto:(?P<addr>[^()\s?]+)(?:\?[^()\s]*)?\)")
_QUOTED = re.compile(r"[\"„“«]([^\"„“”«»]+)[\"”“»]")
_COMMENT_NAME = re.compile(r"\((?P<name>[^()@]+)\)")
_DATEISH = re.compile(r"\d{1,4}[./:-]\d{1,2}|\b\d{4}\b|\d{1,2}:\d{2}")
_RULE = re.compile(r"[-_=*~]{3,}")


def original_sender(mail: ParsedMail) -> Address | None:
    """The original From of a forwarded mail, or None when this is not a forward.

    A forward is an attached message/rfc822 from someone else, or a forwarded-message block
    in the body that is marked as one (a marker line, a forward subject prefix, or a header
    block with nothing but rules above it, under a subject that is not a reply's). A quoted
    reply is not a forward.
    """
    attached = _from_attached_message(mail)
    if attached is not None:
        return attached
    lines = mail.text.replace("\r\n", "\n").split("\n")
    subject = mail.subject or ""
    subject_says = bool(_FORWARD_SUBJECT.match(subject))
    reply = not subject_says and bool(_REPLY_SUBJECT.match(subject))
    markers = [_FORWARD_MARKER.match(line) for line in lines]
    # The first forward marker's line, or 0 when there is none (nothing lies above it).
    first_marker = next((i for i, m in enumerate(markers) if m), 0)
    written_above = False
    for i, line in enumerate(lines):
        marker = markers[i]
        from_key = _FROM_KEY.match(line)
        if marker or from_key or _is_attribution(line):
            if marker and reply and _ORIGINAL.search(marker.group(0)):
                return None  # Outlook's separator over a reply's quote
            # Unmarked, only a whole header block at the top counts: a mail that opens with
            # "On ..., Ann wrote:" is a bottom-posted reply, a lone "From:" line is just text.
            # Above a marker, the block's fields end where the marker's block begins.
            end = min(i + 6, first_marker) if i < first_marker else i + 6
            header_block = from_key is not None and any(
                _HEADER_FIELD.match(x) for x in lines[i + 1 : end]
            )
            top_block = not (written_above or reply) and header_block
            if i < first_marker and not (reply or top_block):
                # A forward marker further down opens the forwarded block: a From line or
                # attribution above it is the agent's note ("her lawyer <jim@...> wrote on
                # ...:"), not the forward's sender. Under a reply's subject it still makes
                # the mail a quoted reply.
                written_above = written_above or _is_written(line)
                continue
            if not (marker or subject_says or top_block):
                return None  # a quoted reply's header, not a forward
            rest = line[marker.end() :] if marker else ""
            found, named = _sender_in_block(lines[i : i + 12], rest)
            if found is not None:
                return found
            if named and (marker or _fields_follow(lines[i + 1 : i + 3])):
                # The forward's own header names its sender without an address (Outlook's
                # "From: Jane Customer"): any address further down is someone the original
                # sender quoted, not them.
                return None
        written_above = written_above or _is_written(line)
    return None


def _fields_follow(following: list[str]) -> bool:
    """Whether header fields follow a From line directly (a wrapped address may come first),
    so it heads a header block rather than being a line of prose."""
    for line in following:
        if not line.strip():
            return False
        if _HEADER_FIELD.match(line):
            return True
    return False


def _from_attached_message(mail: ParsedMail) -> Address | None:
    for part in mail.attachments:
        if part.content_type != "message/rfc822":
            continue
        inner = parse(part.data).from_
        if inner is not None and (mail.from_ is None or inner.address != mail.from_.address):
            return inner
    return None


def _is_written(line: str) -> bool:
    """Whether a line carries text; quote marks and rules (Outlook's ____ line) do not."""
    text = line.strip().strip(">").strip()
    return bool(text) and not _RULE.fullmatch(text)


def _is_attribution(line: str) -> bool:
    text = line.strip().lstrip("> ")
    return bool(_WROTE.search(text)) and "@" in text and text.endswith((":", "：")) and bool(
        _DATEISH.search(text)
    )


def _sender_in_block(block: list[str], marker_rest: str) -> tuple[Address | None, bool]:
    """The From field of a forwarded header block, or the person named in an attribution;
    and whether the block named a sender at all (a From field or an attribution, with an
    address that could be read or not)."""
    # Yahoo's header run into the marker line is the forward's own: it comes before any
    # From line or attribution further down, which the original sender quoted.
    inline = _INLINE_FROM.search(marker_rest)
    if inline:
        value = _unlinked(inline.group("value"))
        angle = _ANGLE.search(value)
        # Run-together fields leave no space after a bare address ("a@b.comTo: ..."): only a
        # bracketed one is certain, and only before the next field ("a@bTo: Bob <bob@c>").
        if angle and not re.search(r"[:：]", value[: angle.start()]):
            return _address(value), True
        return None, True
    for n, line in enumerate(block):
        match = _FROM_KEY.match(line)
        if match:
            return _address(_unwrapped(match.group("value"), block[n + 1 : n + 2])), True
        if _is_attribution(line):
            return _address(line, attribution=True), True
    return None, False


def _unwrapped(value: str, following: list[str]) -> str:
    """A From value with its address, when the address wrapped onto the next line."""
    if _ANGLE.search(_unlinked(value)) or _BARE.search(value) or not following:
        return value
    wrapped = _WRAPPED_ADDRESS.match(following[0])
    return f"{value} {wrapped.group('value')}" if wrapped else value


def _unlinked(value: str) -> str:
    """Mailto links that html_to_text wrote as markdown, back to "Name <address>"."""

    def plain(m: re.Match[str]) -> str:
        text = m.group("text").strip()
        return m.group("addr") if not text or "@" in text else f"{text} <{m.group('addr')}>"

    return _MAILTO_LINK.sub(plain, value)


def _address(value: str, *, attribution: bool = False) -> Address | None:
    value = _unlinked(value.strip())
    angle = _ANGLE.search(value)
    if angle:
        before = re.split(r"[<\[]", value[: angle.start()])[-1]
        return Address(name=_clean_name(before, attribution), address=angle.group("addr").lower())
    bare = _BARE.search(value)
    if not bare:
        return None
    address = bare.group("addr").lower()
    before, after = value[: bare.start()].strip(), value[bare.end() :].strip()
    if attribution:
        return Address(name=_clean_name(before, attribution), address=address)
    return _bare_field(before, after, address)


def _bare_field(before: str, after: str, address: str) -> Address | None:
    """An unbracketed address that is a whole From value: "a@b", "Ann (a@b)", "a@b (Ann)",
    '"Ann" a@b'. Anything else is prose that happens to mention an address."""
    before = before.removesuffix("mailto:").strip()
    comment = _COMMENT_NAME.fullmatch(after)
    if before.endswith("(") and after == ")":
        return Address(name=_clean_name(before, False), address=address)
    if (before and not _QUOTED.fullmatch(before)) or (after and not comment):
        return None
    name = _clean_name(before, False)
    if not name and comment:
        name = _clean_name(comment.group("name"), False)
    return Address(name=name, address=address)


def _clean_name(text: str, attribution: bool) -> str:
    """A display name from the text before an address; attributions carry dates and verbs."""
    quoted = _QUOTED.findall(text)  # "Jane", „Jan” (pl), «Jean» (fr)
    if quoted and quoted[-1].strip():
        return quoted[-1].strip()
    if attribution:
        verb = list(_WROTE.finditer(text))
        if verb:
            text = text[verb[-1].end() :]
        text = text.rsplit(",", 1)[-1]
        text = re.sub(r"^\s*(?:on|am|le|el|il|op|den|em|dne|dnia)\b", "", text, flags=re.I)
    name = text.replace("\ufeff", "").strip().strip("'\"*«»“”„(").strip()
    return "" if "@" in name or _DATEISH.search(name) else name
