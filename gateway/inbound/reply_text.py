"""Extract only the new text of a reply: quoted history, mobile footers and signatures removed."""

from __future__ import annotations

import re
from itertools import islice

from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from lxml import html as lxml_html
from mailparser_reply.parser import EmailMessage

from gateway.inbound.mail import ParsedMail

# mail-parser-reply's "On ... wrote:" and Outlook header patterns, in every language it knows.
_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh")


class _QuoteHeaders(EmailMessage):
    """mail-parser-reply's split of a body at its quote headers, without its signature and
    disclaimer search: only where the headers are is used here, and those two searches were
    most of its cost (and a third of the pipeline's work before the transaction)."""

    def _process_signatures_disclaimers(self, text: str) -> tuple[list[str], str]:
        return [], ""


# The library's pattern, built once (it would assemble it again for every message).
LIBRARY_HEADERS = _QuoteHeaders(text="", languages=list(_LANGUAGES)).HEADER_REGEX
# Each of its alternatives starts at a line start (`^`) or at a newline (`\n`), but the
# regex engine tries all 27 of them at every character of the text. A zero-width guard in
# front lets every other position fail at once: the same matches, a fifth of the time
# (tests/test_reply_text.py holds both to the same findall).
_HEADERS = re.compile(rf"(?:^|(?=\n))(?:{LIBRARY_HEADERS.pattern})", LIBRARY_HEADERS.flags)
_LIBRARY_LINE = 400  # characters of each line it is shown (see _library_cut)

# The verb that ends an attribution line ("On <date>, <name> wrote:") in common languages.
_WROTE_WORDS = (
    r"wrote|writes|schrieb|schreibt|a écrit|a ecrit|escribió|escribio|ha scritto|scrisse|schreef"
    r"|skrev|kirjoitti|napisał\(a\)|napisał|napisała|napsal\(a\)|napsal|escreveu|написал\(а\)"
    r"|написал|написала|написав|пише|yazdı|írta|skrifaði|rašė"
    r"|έγραψε|كتب|đã viết|menulis|napisao|napisala|napisal|a scris|написа|rakstīja|kirjutas"
)
# Chinese, Japanese and Korean write no space around a word: "张三写道：", "작성했습니다".
_WROTE_CJK = r"写道|寫道|書きました|작성"
_WROTE = rf"{_WROTE_WORDS}|{_WROTE_CJK}"
# Whole words only: "beschrieben" is no "schrieb", "rewrote" no "wrote", "napisałem" no
# "napisał". Lookarounds rather than \b, since "napisał(a)" ends with no word character.
_VERB = re.compile(rf"(?<!\w)(?:{_WROTE_WORDS})(?!\w)|{_WROTE_CJK}", re.IGNORECASE)
# Gmail in some locales opens with the weekday: "понедельник, 6 октября 2014 г. пользователь
# Ann написал:", "Monday, 6 October 2014, Ann wrote:".
_WEEKDAYS = (
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
    "|montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag"
    "|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche"
    "|lunes|martes|miércoles|jueves|viernes|sábado|domingo"
    "|lunedì|martedì|mercoledì|giovedì|venerdì|sabato|domenica"
    "|maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag"
    "|segunda-feira|terça-feira|quarta-feira|quinta-feira|sexta-feira"
    "|poniedziałek|wtorek|środa|czwartek|piątek|sobota|niedziela"
    "|måndag|tisdag|onsdag|torsdag|fredag|lördag|söndag|mandag|tirsdag|lørdag|søndag"
    "|понедельник|вторник|среда|четверг|пятница|суббота|воскресенье"
)
# Words that open an attribution; whole words only, so "One question:" or "Amazing!" are not.
_OPENERS = r"on|am|le|el|il|op|den|dne|dňa|dana|em|dnia|w dniu|στις|vào|pada"
_LEAD_IN = re.compile(
    rf"^(?:(?:{_OPENERS}|at|às|as|{_WEEKDAYS})\b|kl\.|\d|\"|„|«)", re.IGNORECASE
)
# ... and those that only ever open one, never continue a wrapped one ("at 10:12, Ann wrote:").
_OPENER = re.compile(rf"^(?:{_OPENERS}|{_WEEKDAYS})\b", re.IGNORECASE)
# Gmail's bare "2016-03-03 17:21 GMT+01:00 Some One" attribution, colon or not.
_GMAIL_DATED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{1,2}:\d{2} GMT[+-]\d{1,2}:\d{2}\b")
_DATE_HINT = re.compile(r"\d{1,4}[./:-]\d{1,2}|\b\d{4}\b|\d{1,2}:\d{2}|@")
# Gmail in some locales: "2017-11-24 16:32 GMT+01:00 Name <a@b.c>:" with no verb at all.
# Possessive spaces (`\s*+`) here and below: "\s*[:：]?\s*$" tried every split of a run of
# spaces that was not at the end of the line, quadratic in its length (23 s for 100 KB).
# The bracketed address is "<local@domain>" with no "@" in its local part and possessive runs:
# "[^<>\s]+@[^<>\s]+>" tried every "@" of a long run as the split (8 s for "<" + "a@" * 50000).
_BRACKETED = r"<[^<>\s@]++@[^<>\s]++>"
_DATED_ADDRESS = re.compile(rf"^\d{{1,4}}[./-]\d{{1,2}}[./-]\d{{1,4}}.*{_BRACKETED}\s*+[:：]?\s*$")
# An attribution that ends with the sender's bracketed address, then a colon, a verb or both:
# "11:00 AM, November 17, 2021, "John" <j@acme.com>:", Russian Gmail's "ср, 30 апр. 2025 г.
# в 15:19, John <j@x.com>:", "On <date> John <j@x.com> wrote" with no colon.
_ADDRESS_END = re.compile(
    rf"{_BRACKETED}\s*+(?:[:：]|(?:{_WROTE})\s*+[:：]?)\s*$", re.IGNORECASE)
# Horde webmail's "Quoting Ann Lee <ann@example.com>:" (and its translations).
_QUOTING = re.compile(
    r"^(?:quoting|zitat von|citando|citation de|citaat van|cytując) [^<>\n]{1,100}"
    rf"{_BRACKETED}\s*[:：]\s*$", re.IGNORECASE)
# Lotus Notes' "Ann Lee/ACME wrote on 06/03/2024 10:12:00 AM:": a numeric date and a time,
# so a customer's "Ann wrote on Monday:" is not one.
_WROTE_ON = re.compile(
    r"^[^:\n]{1,100} (?:wrote|schrieb) (?:on|am) \d{1,4}[./-]\d{1,2}[./-]\d{2,4},? "
    r"\d{1,2}:\d{2}(?::\d{2})?(?: ?[ap]\.?m\.?)?\s*[:：]\s*$", re.IGNORECASE)
_TIME = re.compile(r"\b\d{1,2}[:.]\d{2}\b")  # a time of day: 15:19, 17.50
_WHEN = re.compile(rf"{_TIME.pattern}|\b(?:19|20)\d{{2}}\b")  # ... or a year
# What a mail client's attribution carries and a customer's "Dana from sales wrote on
# 12.03.2024:" or "On Monday I emailed bob@acme.com and he wrote:" does not: the sender's
# address in brackets (wrapped "<\nhelp@acme.test>" too, once the lines are joined), or in
# parentheses right before the verb ("John Doe (\njohn@acme.test) escreveu:").
_ADDRESS = re.compile(
    rf"<\s*+[^<>\s@]++@[^<>\s]++\s*+>|\(\s*+[^()\s@]++@[^()\s]++\s*+\)\s*+(?:{_WROTE})"
    r"\s*+[:：]\s*$", re.IGNORECASE)
# A quoted line: "> " or Supercite's "Ann> ".
_QUOTED = re.compile(r"^\s*[^\W\d_]{0,12}>")
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}\b|(?<![\d.])\d{1,2}\.\d{2}(?![\d.])")
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}|\b\d{4}\b")

# Outlook and Thunderbird separators ("-----Original Message-----" and its translations).
_SEPARATOR = re.compile(
    r"^\s*[-_=*>]*\s*(?:original message|original email message|ursprüngliche nachricht"
    r"|originalnachricht|message d'origine|message original|mensaje original|messaggio originale"
    r"|oorspronkelijk bericht|originalmeddelande|oprindelig (?:meddelelse|besked)"
    r"|opprinnelig melding|alkuperäinen viesti|mensagem original|wiadomość oryginalna"
    r"|původní zpráva|исходное сообщение|forwarded message|weitergeleitete nachricht"
    r"|message transféré|mensaje reenviado|messaggio inoltrato|doorgestuurd bericht"
    r"|vidarebefordrat meddelande|videresendt meddelelse|mensagem encaminhada"
    r"|пересылаемое сообщение|begin forwarded message|anfang der weitergeleiteten nachricht"
    r"|début du message réexpédié|inizio messaggio inoltrato|comienzo del mensaje reenviado"
    r"|begin doorgestuurd bericht|reply message|antwort nachricht)\s*+[-_=*:]*+\s*$",
    re.IGNORECASE,
)
# Help desks' "##- Please type your reply above this line -##": all below it is their mail.
_REPLY_ABOVE = re.compile(
    r"^[\W_]*(?:please )?(?:type|write|enter|reply|respond)(?: your)?(?: reply| response)?"
    r" above this line[\W_]*$|^[\W_]*(?:bitte )?(?:oberhalb|über) dieser zeile"
    r" (?:antworten|schreiben)[\W_]*$|^[\W_]*(?:veuillez )?répond(?:re|ez) au-dessus de cette"
    r" ligne[\W_]*$", re.IGNORECASE)
_RULE = re.compile(r"^\s*[_\-=]{10,}\s*$")

# Header names of a quoted header block ("From: / Sent: / To: / Subject:") in many languages.
_FROM_KEYS = (
    "from|von|de|da|van|från|fra|od|от|от кого|lähettäjä|feladó|kimden|发件人|寄件者|差出人"
    "|afzender|remetente|expéditeur|mittente|remitente|nadawca|odesílatel|відправник|message du"
)
_OTHER_KEYS = (
    "sent|date|to|subject|cc|bcc|reply-to|gesendet|datum|an|betreff|kopie|envoyé|à|a|objet"
    "|copie à|cc ?:|sujet|enviado|fecha|para|asunto|inviato|data|oggetto|verzonden|aan"
    "|onderwerp|skickat|till|ämne|sendt|til|emne|dato|wysłano|do|temat|dw|odesláno|komu"
    "|předmět|kopie|отправлено|кому|тема|дата|копия|lähetetty|vastaanottaja|aihe|päivämäärä"
    "|elküldve|címzett|tárgy|gönderildi|kime|konu|tarih|发送时间|收件人|主题|抄送|日付|宛先"
    "|件名|enviada|assunto|organization|organisation|importance|priorität"
)
_HEADER = re.compile(
    rf"^\s*[*_]*(?P<key>{_FROM_KEYS}|{_OTHER_KEYS})[*_]*\s*[:：][*_]*(?:\s|$)", re.IGNORECASE
)
_FROM_KEY = re.compile(rf"^(?:{_FROM_KEYS})$", re.IGNORECASE)

# "Sent from my iPhone" and its kin: a whole short line, never a sentence that mentions it.
_MOBILE = re.compile(
    r"^\s*[(<]*\s*(?:sent (?:from|with|via|using) (?:my |the )?\S+(?: \S+){0,5}"
    r"|sent from my \S+(?: \S+){0,4}[,.]?\s{1,3}please excuse.*"
    r"|get (?:\[)?outlook for \S+.*|envoyé (?:depuis|de|à partir de) (?:mon |ma )?\S+.*"
    r"|von meinem \S+(?: \S+){0,3} gesendet\.?|gesendet von (?:meinem )?\S+(?: \S+){0,3}"
    r"|enviado (?:desde|de|do) (?:mi|meu|o meu) \S+(?: \S+){0,3}"
    r"|inviato da(?:l mio)? \S+(?: \S+){0,3}|enviat des del meu \S+(?: \S+){0,3}"
    r"|(?:verzonden|verstuurd) (?:vanaf|van|met) (?:mijn )?\S+(?: \S+){0,3}"
    r"|skickat från (?:min )?\S+.*|sendt fra (?:min )?\S+(?: \S+){0,3}"
    r"|wysłan[oe] z (?:mojego )?\S+.*|lähetetty \S+.*|odesláno z \S+(?: \S+){0,3}"
    r"|trimis de pe \S+(?: \S+){0,3}|poslano (?:s|sa|z|iz) (?:mog |mojega )?\S+(?: \S+){0,3}"
    r"|надіслано з \S+(?: \S+){0,3}|αποστολή από \S+(?: \S+){0,3}|gửi từ \S+(?: \S+){0,4}"
    r"|dikirim dari \S+(?: \S+){0,3}|az \S+(?:ról|ről) küldve|\S+['’]\S*d[ae]n gönderildi"
    r"|(?:obtener|descargar|télécharger|obtenir|scarica|ottieni|baixe|obter|download) (?:\[)?"
    r"outlook (?:para|pour|per|for|voor) \S+.*|(?:\[)?outlook für \S+ herunterladen.*"
    r"|von (?:\[)?outlook für \S+ gesendet.*"
    r"|отправлено с \S+.*|從我的 .* 傳送|从我的.*发送|iPhoneから送信|sent from mobile"
    r"|diese nachricht wurde von meinem .* gesendet\.?)\s*+[)>]*+\s*$",
    re.IGNORECASE,
)
# ... which is never this long nor says what happened: "Sent from my laptop but it never came."
_MOBILE_MAX = 120
_SENTENCE_WORDS = re.compile(
    r"\b(?:i|we|they|but|because|yesterday|today|never|still|failed|was|were|didn't|doesn't"
    r"|won't|can't|mais|aber|pero|maar|gestern|ayer|ieri|gisteren)\b", re.IGNORECASE)
# ... and names the phone, tablet or mail app it came from: "Sent from", "Verstuurd met",
# "Odesláno z", "Dikirim dari" also say where a parcel was shipped from ("Verstuurd met PostNL
# op maandag", "Odesláno z Prahy 3. března"). A word starting with one of these must be in it.
_DEVICE = re.compile(
    r"(?<![a-z])(?:iphon|ipad|ipod|ios\b|android|samsung|galaxy|blackberry|mobil|móvil|movil"
    r"|cell|phone|smartphone|smartfon|telefon|telefoon|teleph|téléphone|teléfono|portable"
    r"|handy|tablet|outlook|mail|gmail|yahoo|aol\b|airmail|mailbox|typeapp|spark\b|superhuman"
    r"|proton|windows|device|gerät|apparaat|appareil|dispositivo|urządzeni"
    r"|zařízení|nokia|htc\b|huawei|xiaomi|redmi|pixel|nexus|xperia|motorola|oneplus|alcatel"
    r"|wiko|kindle|surface|apple|macbook|k-9|bb10|ponsel|hp\b|cellulare|celular|телефон"
    r"|смартфон|айфон|пристр|τηλέφων|κινητ|điện thoại)", re.IGNORECASE)
_CJK_FOOTER = re.compile(r"^(?:從我的 .* 傳送|从我的.*发送|iPhoneから送信)$")
# Lines a footer may have below it and still end the reply: a name, a company, a number
# ("Jane Doe / ACME Ltd / +44 20 7946 0000"); a sentence below one is the customer's.
_SIGNATURE_LIKE_MAX = 60
_SENTENCE_END = re.compile(r"[.!?;]\s*$|\?")
# RFC 3676 §4.3: "-- " opens a signature. A bare "--", "__" or "—" may also be a customer's
# own divider between two problems: it opens one only above a short signature-like tail.
_SIG_DELIMITER = re.compile(r"^(?:-- ?|__|—)$")
_RFC_DELIMITER = "-- "
# A rule of underscores over a mailing list's footer, the short last block ("riak-users
# mailing list / address / listinfo URL"). A postscript, a plain list ("Item 1 / Item 2"),
# numbers or sentences below one are the customer's.
_FOOTER_RULE = re.compile(r"^\s*_{10,}\s*$")
_FOOTER_LINES = 6
# Only a list's own footer: its name, its address, its web page; never a bare number (an order
# number or a date is one) nor a link alone (a customer's screenshot).
_LINK = re.compile(r"https?://|www\.|\S@\S")
_LIST_WORDS = re.compile(
    r"\b(?:mailing[ -]?list|mailingliste|liste de diffusion|lista de correo|listinfo|mailman"
    r"|unsubscribe|listserv|google ?groups)\b", re.IGNORECASE)
_FIRST_PERSON = re.compile(
    r"\b(?:i|i'm|i've|me|my|mine|we|us|our|ich|mein|meine|mir|wir|je|j'ai|mon|ma|mes|nous"
    r"|yo|mi|mis|ik|mijn|wij)\b", re.IGNORECASE)
_POSTSCRIPT = re.compile(r"^\s*(?:p\.?\s?){1,2}s\b", re.IGNORECASE)
_SYMBOLS_ONLY = re.compile(r"^\s*[-_=*#~+.ᐧ\u200b]+\s*$")
_QUOTE_CONTAINERS = (
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
    "|//blockquote[@type='cite']|//div[@class='moz-cite-prefix']"
    "|//div[contains(@class, 'yahoo_quoted')]|//div[contains(@class, 'protonmail_quote')]"
    "|//*[@id='mail-editor-reference-message-container']|//div[@name='messageReplySection']"
    "|//blockquote[contains(@class, 'gmail_quote')]|//div[contains(@class, 'zmail_extra')]"
)
# Outlook marks where the quoted mail starts; that element and everything after it goes.
_OUTLOOK_MARKERS = (
    "//*[@id='appendonsend']|//*[@id='divRplyFwdMsg']|//*[@id='x_divRplyFwdMsg']"
    "|//*[@id='x_appendonsend']|//hr[@id='stopSpelling']"
    "|//div[starts-with(translate(@style, ' ', ''), 'border:none;border-top:solid#E1E1E1')]"
    "|//div[starts-with(translate(@style, ' ', ''), 'border:none;border-top:solid#B5C4DF')]"
)
_HTML_CONFIG = ParserConfig(display_links=True)


def reply_text(mail: ParsedMail) -> str:
    """The customer's new words: the HTML quote containers when the mail has them, else text rules.

    HTML containers are what the sending client itself marked as quoted, so they are trusted
    over text patterns; the text rules still run on what is left.
    """
    if mail.html:
        from_html = _html_without_quotes(mail.html)
        if from_html is not None:
            return strip_quotes(from_html)
    text = mail.text
    if not text.strip() and mail.html:
        text = _to_text(mail.html)
    return strip_quotes(text)


def strip_quotes(text: str) -> str:
    """Plain-text reply extraction: cut at the first quoted-history marker, drop "> " lines,
    mobile footers and a trailing signature. Falls back to the quote when nothing else is left."""
    lines = [_RFC_DELIMITER if line.startswith(_RFC_DELIMITER) and line.rstrip() == "--"
             else line.rstrip()
             for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    result = _strip(lines, 0)[0]
    return result.replace(_RFC_DELIMITER + "\n", "--\n") if _RFC_DELIMITER in result else result


def _strip(lines: list[str], depth: int) -> tuple[str, int]:
    """strip_quotes on lines, and the index where the quoted history starts in them."""
    cut = _history_start(lines)
    kept = lines[:cut]
    if cut < len(lines) and not any(line.strip() for line in kept):
        return _bottom_post(lines[cut:], depth), cut
    unquoted = [kept[n] for n in _unquoted(kept)]
    if any(line.strip() for line in unquoted):
        kept = unquoted
    kept = _without_signature(kept)
    result = "\n".join(kept).strip("\n")
    answers = _interleaved_answers(lines, cut)
    if answers and result.strip():
        result = result.rstrip() + "\n\n" + answers
    if not result.strip() and cut < len(lines):
        # Only quoted history: keep a quote-free top if there is one, else say nothing new.
        return "", cut
    return result.strip(), cut


def _interleaved_answers(lines: list[str], cut: int) -> str:
    """Answers written between quoted lines below an attribution ("> question" / answer).

    Only unquoted paragraphs that follow a blank line or an empty "> " line count: a line right
    after a quoted line with text may be one the client wrapped without its marker.
    """
    if cut >= len(lines) or not _is_attribution(lines, cut):
        return ""
    end = cut + 1
    while end < len(lines) and lines[end].strip() and not lines[end].lstrip().startswith(">"):
        end += 1
    end = _next_content(lines, end)  # Gmail leaves a blank line under the attribution
    region = lines[end:]
    if not region or not region[0].lstrip().startswith(">"):
        return ""
    stop = _history_start(region)
    answers: list[str] = []
    previous = ">"
    for line in region[:stop]:
        quoted = line.lstrip().startswith(">")
        if not quoted and line.strip() and (answers and answers[-1] != "" or previous == ""):
            answers.append(line)
        elif not line.strip() and answers and answers[-1] != "":
            answers.append("")
        content = line.strip().lstrip("> ").strip() if quoted else line.strip()
        previous = ">" if quoted and content else content
    return "\n".join(_without_signature(answers, keep_first=False)).strip()


def _unquoted(lines: list[str]) -> list[int]:
    """Indexes of the lines that are not "> " quoted; of the blank lines either side of a
    removed quote only one is kept, so answers stay one paragraph break apart."""
    kept: list[int] = []
    removed = False
    for n, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            removed = True
            continue
        if removed and not line.strip() and kept and not lines[kept[-1]].strip():
            continue
        removed = removed and not line.strip()
        kept.append(n)
    return kept


# Bottom posts below bottom posts: each level scanned the rest again with the library, so
# "On ... wrote:" lines stacked 2,000 deep took time quadratic in their number (35 s for
# 100 KB). Past this many levels only our own line rules skip further stacked quote headers.
_BOTTOM_POST_DEPTH = 3


def _bottom_post(lines: list[str], depth: int = 0) -> str:
    """Nothing above the first quote header: the new words may be below the quoted block."""
    i = 0
    while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(">"):
        i += 1  # the attribution or header block itself
    kept = [i + n for n in _unquoted(lines[i:])]
    rest = [lines[n] for n in kept]
    if not any(line.strip() for line in rest) or len(rest) == len(lines):
        return ""
    if depth > _BOTTOM_POST_DEPTH:
        return "\n".join(_without_signature(rest)).strip()  # what is left, as it stands
    if depth == _BOTTOM_POST_DEPTH:
        start = _past_stacked_headers(rest)
        kept, rest = kept[start:], rest[start:]
        if not any(line.strip() for line in rest):
            return ""
    result, cut = _strip(rest, depth + 1)
    # An unquoted attribution further down ends the reply, but answers may sit between the
    # quoted lines below it; those quote markers are only in the unfiltered lines.
    if cut < len(rest) and any(line.strip() for line in rest[:cut]):
        answers = _interleaved_answers(lines, kept[cut])
        if answers:
            result = result.rstrip() + "\n\n" + answers
    return result


def _past_stacked_headers(lines: list[str]) -> int:
    """Index past the quote headers (and blank lines) stacked at the top of lines; one pass."""
    start = 0
    while True:
        i = _next_content(lines, start)
        stripped = lines[i].strip() if i < len(lines) else ""
        if not stripped or not (_SEPARATOR.match(stripped) or _REPLY_ABOVE.match(stripped)
                                or _is_attribution(lines, i) or _is_header_block(lines, i)):
            return start
        while i < len(lines) and lines[i].strip():
            i += 1
        start = i


def _history_start(lines: list[str]) -> int:
    """Index of the first line of quoted history (attribution, separator, header block)."""
    library_cut = _library_cut(lines)
    for i, line in enumerate(lines[:library_cut]):
        stripped = line.strip()
        if not stripped or stripped.startswith(">") and not _VERB.search(stripped):
            continue
        if (_SEPARATOR.match(stripped) or _REPLY_ABOVE.match(stripped)
                or _is_attribution(lines, i) or _is_header_block(lines, i)):
            return _back_over_rules(lines, i)
        if _RULE.match(stripped) and _is_header_block(lines, _next_content(lines, i + 1)):
            return i
    return library_cut


def _library_cut(lines: list[str]) -> int:
    """Where mail-parser-reply's language tables see a header; a ceiling for our own rules.

    Its "On ... wrote:" pattern (".+?\\s?.+?") takes time quadratic in a line's length: a
    3,000-character paragraph that opens with "On" cost 0.1 s, a 100 KB line minutes. No quote
    header is that long, so each line is cut to its first _LIBRARY_LINE characters for it.
    """
    text = "\n".join(line.strip()[:_LIBRARY_LINE] for line in lines)
    try:
        found = _QuoteHeaders(text=text, languages=list(_LANGUAGES),
                              _header_regex=_HEADERS).read().replies
    except Exception:
        return len(lines)
    if len(found) < 2 or not found[1].headers:
        return len(lines)
    position = text.find(found[1].headers)
    if position <= 0:
        return len(lines)
    index = text.count("\n", 0, position)
    # Only trust it when the header starts a line whose next lines look like a quote header.
    if _is_header_block(lines, index) or _is_attribution(lines, index):
        return index
    return len(lines)


def _is_attribution(lines: list[str], i: int, *, nested: bool = False) -> bool:
    """ "On <date>, <name> wrote:" over up to six lines; it must carry a date or an address
    and start like an attribution, so a customer's "my colleague wrote:" is not one.

    A line that opens an attribution of its own starts it there: the customer's line above it
    ("Ask @ann.", "On the whole, yes") is not part of it. With neither the sender's address nor
    a time of day, the quote must follow it (see _quote_follows).
    """
    first = lines[i].strip().lstrip("> ").strip("- ")
    if re.search(r"\bwrote\s*-{2,}\s*$", lines[i]) and _DATE_HINT.search(first):
        return True  # Zoho: "---- On <date> <name> wrote ----"
    if (_GMAIL_DATED.match(first) or _DATED_ADDRESS.match(first) or _QUOTING.match(first)
            or _WROTE_ON.match(first)):
        return True
    if not (_LEAD_IN.match(first) or "@" in first):
        # Any first word ("pe 20. lokakuuta 2017 klo 17.50 John Coe" / "<j@x.fi> kirjoitti:"),
        # but then with a time of day on its first line and ended by an address on its second.
        second = lines[i + 1].strip().lstrip("> ") if i + 1 < len(lines) else ""
        return bool(_TIME.search(first) and _ADDRESS_END.search(second)
                    and (_VERB.search(second) or ":" in second))
    block = first
    for j in range(i + 1, min(i + 6, len(lines)) + 1):
        if len(block) > 400:
            return False
        if _ADDRESS_END.search(block) and _WHEN.search(block):
            return True
        if re.search(r"[:：]\s*$", block) and (_VERB.search(block) or _DATED_ADDRESS.match(block)):
            if not _DATE_HINT.search(block):
                return False
            # Only a date and a verb ("Monday, 3 March 2025, the courier wrote:"), even with a
            # time of day or a bare address ("On Monday I emailed bob@acme.com and he wrote:"):
            # a mail client's only if the quote follows it, not the customer's paragraph going
            # on. A bracketed "<addr>" is a mail client's own form and ends the reply anyway.
            return _ADDRESS.search(block) is not None or _quote_follows(lines, j)
        if j >= len(lines):
            break
        following = lines[j].strip().lstrip("> ")
        # ... but only one with a date or time of its own: "Dana Scully <dana@acme.test> wrote:"
        # or "El Hadji Diop <...> escribió:" under "On <date> at 10:12," is the second half.
        if (not nested and _OPENER.match(following)
                and (_DATE.search(following) or _CLOCK.search(following))
                and _is_attribution(lines, j, nested=True)):
            return False
        block += " " + following
    return False


def _quote_follows(lines: list[str], i: int) -> bool:
    """Whether the lines from i on, past blank lines, are "> " (or Supercite's "Ann> ")
    quoted, a header block or none."""
    i = _next_content(lines, i)
    return i >= len(lines) or _QUOTED.match(lines[i]) is not None or _is_header_block(lines, i)


def _is_header_block(lines: list[str], i: int) -> bool:
    """Two or more quoted-header fields in a row, one of them a sender field."""
    if i >= len(lines):
        return False
    first = _HEADER.match(lines[i])
    if not first:
        return False
    keys = [first.group("key").lower()]
    for line in lines[i + 1 : i + 8]:
        match = _HEADER.match(line)
        if match:
            keys.append(match.group("key").lower())
        elif line.strip() and len(keys) >= 4:
            break
    distinct = set(keys)
    has_sender = any(_FROM_KEY.match(k) for k in distinct) or "message du" in distinct
    return len(distinct) >= 2 and has_sender or len(distinct) >= 3


def _back_over_rules(lines: list[str], i: int) -> int:
    """Include separator rules and blank lines just above a quote header in the cut."""
    while i > 0 and (not lines[i - 1].strip() or _SYMBOLS_ONLY.match(lines[i - 1])):
        i -= 1
    return i


def _next_content(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _without_signature(lines: list[str], *, keep_first: bool = True) -> list[str]:
    """Drop an RFC 3676 signature, mobile footers and decorative rules at the end.

    Closings such as "Thanks, Jane" stay: they are the customer's words. A mobile footer ends
    the reply only where nothing the customer wrote follows it (see _footer_tail).
    """
    content = [i for i, line in enumerate(lines) if line.strip()]
    if not content:
        return lines
    first = content[0]
    tail: list[bool] | None = None
    kept: list[str] = []  # the lines kept so far, up to start
    start: int | None = 0  # where the lines being kept began; None while in a signature
    for i in content[1:] if keep_first else content:
        stripped = lines[i].strip()
        if start is None:
            if _POSTSCRIPT.match(stripped):  # "P.S." below a signature is the customer's
                while kept and not kept[-1].strip():
                    kept.pop()
                kept += [""] if kept else []
                start = i
            continue
        if _SIG_DELIMITER.match(lines[i]):
            if lines[i] != _RFC_DELIMITER:
                tail = tail or _footer_tail(lines)
                if not (tail[i + 1] or _list_footer_below(lines, i)):
                    continue  # a divider between the customer's paragraphs
            kept += lines[start:i]
            start = None
        elif _is_footer(lines, i):
            kept += lines[start:i]
            start = None
        elif _is_mobile_footer(stripped):
            tail = tail or _footer_tail(lines)
            if tail[i + 1]:
                kept += lines[start:i]
                start = None
                break
    if start is not None:
        kept += lines[start:]
    lines = kept
    end = len(lines)  # one slice at the end: slicing per dropped line was quadratic
    while end - 1 > first and (not lines[end - 1].strip() or _SYMBOLS_ONLY.match(lines[end - 1])):
        end -= 1
    return lines[:end]


def _footer_tail(lines: list[str]) -> list[bool]:
    """For each index, whether the lines from there on hold nothing a customer wrote: blank,
    quoted or decorative lines, mobile footers and at most _FOOTER_LINES signature-like ones,
    up to the end or to a signature delimiter or list footer. One pass from the end."""
    tail = [True] * (len(lines) + 1)
    signature_like = 0
    postscript = False
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        stripped = line.strip()
        if _POSTSCRIPT.match(stripped):
            tail[i] = False  # the customer's, below a signature or not
            postscript = True
        elif line == _RFC_DELIMITER or _is_footer(lines, i):
            signature_like = 0
            tail[i] = not postscript
        elif _SIG_DELIMITER.match(line) and (tail[i + 1] or _list_footer_below(lines, i)):
            signature_like = 0  # a bare "--" over a signature-like tail
        elif (not stripped or stripped.startswith(">") or _SYMBOLS_ONLY.match(stripped)
                or _is_mobile_footer(stripped)):
            tail[i] = tail[i + 1]
        elif _is_signature_like(stripped):
            signature_like += 1
            tail[i] = tail[i + 1] and signature_like <= _FOOTER_LINES
        else:
            tail[i] = False
    return tail


def _is_signature_like(line: str) -> bool:
    """A short line that is no sentence: a name, a company, a phone number, an address."""
    return (len(line) <= _SIGNATURE_LIKE_MAX and not _SENTENCE_END.search(line)
            and not _SENTENCE_WORDS.search(line))


def _is_mobile_footer(line: str) -> bool:
    """A whole "Sent from my iPhone" line, not a customer's sentence that starts the same."""
    if len(line) > _MOBILE_MAX or _MOBILE.match(line) is None or _SENTENCE_WORDS.search(line):
        return False
    return _DEVICE.search(line) is not None or _CJK_FOOTER.match(line) is not None


def _is_footer(lines: list[str], i: int) -> bool:
    """An underscore rule over a mailing list's footer: a few short lines, the list named and
    its address or page among them, no sentence, question or first person (a customer's
    "Order 10023456" or "My number: ..." below a rule is theirs), no postscript."""
    return _FOOTER_RULE.match(lines[i]) is not None and _list_footer_below(lines, i)


def _list_footer_below(lines: list[str], i: int) -> bool:
    """Whether the lines below i are a mailing list's footer (see _is_footer)."""
    below = list(islice((line for line in islice(lines, i + 1, None) if line.strip()),
                        _FOOTER_LINES + 1))
    return (0 < len(below) <= _FOOTER_LINES and not any(_POSTSCRIPT.match(x) for x in below)
            and any(_LIST_WORDS.search(x) for x in below) and any(_LINK.search(x) for x in below)
            and not any(_FIRST_PERSON.search(x) or _SENTENCE_WORDS.search(x)
                        or "?" in x and not _LINK.search(x) for x in below))


def _html_without_quotes(html: str) -> str | None:
    """The HTML's text with client-marked quote containers removed; None when it has none."""
    try:
        root = lxml_html.fromstring(html)
    except Exception:
        return None
    found = False
    for marker in root.xpath(_OUTLOOK_MARKERS):
        _drop_from(marker)
        found = True
    for node in root.xpath(_QUOTE_CONTAINERS):
        if node.getparent() is not None:
            node.getparent().remove(node)
            found = True
    if not found:
        return None
    try:
        return get_text(lxml_html.tostring(root, encoding="unicode"), _HTML_CONFIG)
    except Exception:
        return None


def _drop_from(node: lxml_html.HtmlElement) -> None:
    """Remove a node and everything after it in document order (Outlook's reply layout)."""
    parent = node.getparent()
    if parent is None:
        return
    current = node
    while current is not None:
        following = current.getnext()
        parent.remove(current)
        current = following
    while parent is not None and parent.tag not in ("body", "html"):
        grand = parent.getparent()
        if grand is None:
            break
        sibling = parent.getnext()
        while sibling is not None:
            following = sibling.getnext()
            grand.remove(sibling)
            sibling = following
        parent = grand


def _to_text(html: str) -> str:
    try:
        return get_text(html, _HTML_CONFIG)
    except Exception:
        return re.sub(r"<[^>]*>", " ", html)
