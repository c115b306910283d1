"""Reply extraction: the customer's new words only, never the quoted history."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.inbound.parse import parse
from gateway.inbound.reply_text import _HEADERS, LIBRARY_HEADERS, reply_text, strip_quotes
from tests.conftest import CORPORA, corpus


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


# -- behaviour a support agent would notice ----------------------------------------------------


def test_gmail_attribution_and_quote_are_dropped():
    body = (
        "Yes, the invoice is wrong.\n\n"
        "On Mon, 3 Jun 2024 at 10:12, Acme Support <help@acme.test> wrote:\n\n"
        "> Could you check the invoice?\n> Thanks\n"
    )
    assert strip_quotes(body) == "Yes, the invoice is wrong."


def test_attributions_without_a_quote_marker_or_a_verb_end_the_reply():
    """Clients that quote the old mail without "> " and end the attribution with the sender's
    address: Russian Gmail, a dated "<addr>:" line, "wrote" with no colon, Finnish on two lines."""
    reply = "The replacement arrived, thank you."
    for attribution in (
        "ср, 30 апр. 2025\u202fг. в 15:19, Acme Support <help@acme.test>:",
        '11:00 AM, November 17, 2021, "Acme - Support" <help@acme.test>:',
        "On Wed, 14 Nov 2018 08:14:43 -0200 Acme Support <help@acme.test> wrote",
        "pe 20. lokakuuta 2017 klo 17.50 Acme Support\n<help@acme.test> kirjoitti:",
    ):
        body = f"{reply}\n\n{attribution}\n\nWe have shipped a new fuser.\n"
        assert strip_quotes(body) == reply, attribution


def test_a_customer_line_that_names_an_address_is_kept():
    body = ("Please copy our accounts team, since the 2023 invoices go to\n"
            "<billing@customer.test>:\nthey asked for PDF copies.")
    assert strip_quotes(body) == body


def test_multi_line_attribution_in_german_and_french():
    de = "Danke!\n\nAm 03.06.2024 um 10:12 schrieb Acme Support <\nhelp@acme.test>:\n> alt\n"
    fr = "Merci.\n\nLe lun. 3 juin 2024 à 10:12, Acme <help@acme.test>\na écrit :\n> ancien\n"
    assert strip_quotes(de) == "Danke!"
    assert strip_quotes(fr) == "Merci."


def test_outlook_header_block_in_spanish_and_dutch():
    es = (
        "Funciona, gracias.\n\n________________________________\n"
        "De: Soporte <help@acme.test>\nEnviado: lunes, 3 de junio de 2024 10:12\n"
        "Para: Ana <ana@example.com>\nAsunto: RE: Pedido\n\nTexto anterior\n"
    )
    nl = (
        "Klopt.\n\n-----Oorspronkelijk bericht-----\nVan: Support <help@acme.test>\n"
        "Verzonden: maandag 3 juni 2024 10:12\nAan: Jan\nOnderwerp: Bestelling\n\nOud\n"
    )
    assert strip_quotes(es) == "Funciona, gracias."
    assert strip_quotes(nl) == "Klopt."


def test_signature_and_mobile_footer_are_dropped():
    assert strip_quotes("Please call me.\n\n-- \nJane Doe\nACME Ltd") == "Please call me."
    assert strip_quotes("Please call me.\n\nSent from my iPhone") == "Please call me."
    assert strip_quotes("Bitte zurückrufen.\n\nVon meinem iPhone gesendet") == "Bitte zurückrufen."


def test_customer_words_that_look_like_markers_are_kept():
    body = (
        "On the surface this looks fine.\n"
        "The app was sent from my iPhone app store account, by the way.\n"
        "Thanks, but it still fails when I log in from the office."
    )
    assert strip_quotes(body) == body


def test_interleaved_answers_keep_the_answers_only():
    body = "> Which browser?\nFirefox 126\n> Which OS?\nUbuntu 24.04\n"
    assert strip_quotes(body) == "Firefox 126\nUbuntu 24.04"


def test_only_quoted_history_gives_empty_text():
    body = "On Mon, 3 Jun 2024 at 10:12, Acme <help@acme.test> wrote:\n> old text\n"
    assert strip_quotes(body) == ""


def test_a_customer_paragraph_above_an_attribution_is_not_part_of_it():
    """Attribution openers are whole words ("One", "Amazing" are not "On", "Am"), and a line
    that opens an attribution of its own starts it, even with no blank line above it."""
    one = ("Thanks, that helps.\n\nOne question remains:\n\nWhy is the 2024 invoice late?\n\n"
           "On Mon, 3 Jun 2024 at 10:12, Acme Support wrote:\n\n> The invoice is on its way.\n")
    assert strip_quotes(one) == ("Thanks, that helps.\n\nOne question remains:\n\n"
                                 "Why is the 2024 invoice late?")
    mention = ("Ask @ann in billing, she knows.\nI can test it again next week...\n"
               "Op ma 3 jun. 2024 10:12 schreef \"Acme Support\" <help@acme.test> het\n"
               "volgende:\n\n> Did the update help?\n")
    assert strip_quotes(mention) == ("Ask @ann in billing, she knows.\n"
                                     "I can test it again next week...")
    short = "Next Tuesday.\n\n> On 3 Jun 2024, at 10:12, Acme <help@acme.test> wrote:\n> When?\n"
    assert strip_quotes(short) == "Next Tuesday."


def test_attributions_that_open_with_a_weekday_or_a_webmail_phrase():
    """Gmail's weekday-first form (Russian, English), Horde's "Quoting", Lotus Notes' "wrote on"
    and attribution verbs in Greek, Arabic, Vietnamese and Indonesian. The weekday forms carry
    neither an address nor a time of day: they end the reply where the quote follows them."""
    reply = "The replacement arrived, thank you."
    for attribution in (
        "понедельник, 3 июня 2024 г. пользователь Acme Support написал:",
        "Monday, 3 June 2024, Acme Support wrote:",
    ):
        for quote in ("\n> We have shipped a new fuser.\n", "\n\n> We have shipped a new fuser.\n"):
            body = f"{reply}\n\n{attribution}{quote}"
            assert strip_quotes(body) == reply, attribution
    for attribution in (
        "Quoting Acme Support <help@acme.test>:",
        "Zitat von Acme Support <help@acme.test>:",
        "Acme Support/ACME wrote on 06/03/2024 10:12:00 AM:",
        "Στις Δευ 3 Ιουν 2024 στις 10:12, ο/η Acme Support <help@acme.test> έγραψε:",
        "في الاثنين، 3 يونيو 2024 10:12 ص Acme Support <help@acme.test> كتب:",
        "Vào Th 2, 3 thg 6, 2024 vào lúc 10:12 Acme Support <help@acme.test> đã viết:",
        "Pada tanggal Sen, 3 Jun 2024 10.12, Acme Support <help@acme.test> menulis:",
    ):
        body = f"{reply}\n\n{attribution}\n\nWe have shipped a new fuser.\n"
        assert strip_quotes(body) == reply, attribution


def test_customer_sentences_like_those_attributions_are_kept():
    for body in (
        "Monday, 3 June 2024 suits us; Tuesday works too.\nThe engineer wrote: bring a ladder.",
        "Quoting the manual: the reset takes five minutes.\nIt took an hour.",
        "My manager wrote on Monday: please escalate.\nSo please do.",
        "Ann wrote on 3 June at 10:30: ship it.\nWe are still waiting.",
        "Amazing work. Am I right that the 2024 prices changed: yes or no?",
    ):
        assert strip_quotes(body) == body, body


def test_a_customer_sentence_with_a_date_and_wrote_is_no_attribution():
    """A first name that is also an opener word ("Dana", "Em", "Den", "Le", "El") or a weekday
    may start a customer's sentence: with no address nor time of day, and the customer's
    paragraph going on below it unquoted, it is text."""
    for body in (
        "Hello,\nDana from your sales team wrote on 12.03.2024:\n\"we will refund you within"
        " 5 days\"\nBut nothing happened, three weeks later. Please escalate.",
        "Hi,\nMonday, 3 March 2025, the courier wrote:\nNobody was home.\nBut I was home all day!",
        "Hi,\nMonday, 3 March 2025, the courier wrote:\n\nNobody was home.\n\nBut I was home!",
        "Hola,\nEl 3 de marzo de 2025 el técnico escribió:\nCambiar el fusor.\nNo lo hizo.",
    ):
        assert strip_quotes(body) == body, body


def test_a_word_that_contains_an_attribution_verb_is_no_verb():
    """ "beschrieben" holds "schrieb", "rewrote" "wrote", "napisałem" "napisał": whole words."""
    for body in (
        "Hallo,\nAm 3.6.2024 um 10:15 ist folgender Fehler aufgetreten, wie hier beschrieben:\n"
        "Die App stürzt ab.\n",
        "Hi,\nOn 3 June 2024 at 10:15 I rewrote my address:\nIt is 5 Main St.\n",
        "Dzień dobry,\nW dniu 3.06.2024 o 10:15 napisałem do Państwa:\nNadal brak odpowiedzi.\n",
    ):
        assert strip_quotes(body) == body.strip(), body


def test_chinese_and_polish_verbs_still_end_the_reply():
    reply = "The replacement arrived, thank you."
    for attribution in (
        "2024年6月3日 10:12，张三<help@acme.test>写道：",
        "W dniu 3.06.2024 o 10:15 Acme Support <help@acme.test> napisał(a):",
        "W dniu 3.06.2024 o 10:15 Anna Nowak napisała:",
    ):
        body = f"{reply}\n\n{attribution}\n> We have shipped a new fuser.\n"
        assert strip_quotes(body) == reply, attribution


def test_a_dated_line_with_a_time_or_a_bare_address_and_unquoted_prose_below_is_kept():
    """A time of day or an address without brackets does not make a customer's "..., your
    courier wrote:" a mail client's attribution: only a quote (or nothing) below it does."""
    for body in (
        "Bonjour,\nLe 3 juin 2024 à 10:15, votre collègue a écrit :\n"
        "« le colis arrive demain ». Rien reçu.\n",
        "Hi,\nOn Monday 3 March 2025 at 10:15, your courier wrote:\n"
        "\"Parcel left at door\". It was not there.\n",
        "Hi, timeline:\n1. 03.06.2024 10:15 I ordered, you wrote:\n"
        "2. 04.06.2024 the parcel shipped\n3. Nothing since.\n",
        "Hi,\nOn Monday I emailed bob@acme.com and he wrote:\nWe will call you.\nHe never did.\n",
    ):
        assert strip_quotes(body) == body.strip(), body


def test_mail_client_attributions_above_a_quote_still_end_the_reply():
    """Gmail, Thunderbird and Apple Mail: "On <date>, Name wrote:" (with or without the address)
    over "> " lines, at the end of the text, or over a header block."""
    reply = "Yes, the invoice is wrong."
    for attribution in (
        "On Mon, 3 Jun 2024 at 10:12, Acme Support <help@acme.test> wrote:",
        "On Mon, 3 Jun 2024 at 10:12, Acme Support wrote:",
        "On 03/06/2024 10:12, Acme Support wrote:",
        "On 3 Jun 2024, at 10:12, help@acme.test wrote:",
        "Am 03.06.2024 um 10:12 schrieb Acme Support:",
        "Le lun. 3 juin 2024 à 10:12, Acme Support a écrit :",
    ):
        for below in ("\n> Could you check the invoice?\n",
                      "\n\n> Could you check the invoice?\n> Thanks\n", "\n"):
            body = f"{reply}\n\n{attribution}{below}"
            assert strip_quotes(body) == reply, (attribution, below)
    # A bracketed address is a mail client's own form: no quote marker needed below it.
    body = f"{reply}\n\nOn 3 Jun 2024 at 10:12, Acme <help@acme.test> wrote:\nOld text.\n"
    assert strip_quotes(body) == reply


def test_a_wrapped_attribution_whose_second_line_opens_with_a_name_like_an_opener():
    """ "Dana Scully <...> wrote:" under "On <date> at 10:12," is the attribution's second half,
    not one of its own: both lines go."""
    for body in (
        "Thanks, that fixed it.\n\nOn Mon, 3 Jun 2024 at 10:12,\n"
        "Dana Scully <dana@acme.test> wrote:\n> old text\n",
        "Thanks, that fixed it.\n\nEl lun, 3 jun 2024 a las 10:12,\n"
        "El Hadji Diop <diop@acme.test> escribió:\n> old text\n",
        "Thanks, that fixed it.\n\nEm seg., 3 de jun. de 2024 às 10:12,\n"
        "Em Silva <em@acme.test> escreveu:\n> old text\n",
    ):
        assert strip_quotes(body) == "Thanks, that fixed it.", body


def test_a_bare_divider_between_the_customers_paragraphs_is_no_signature():
    """ "--", "__" or "—" alone opens a signature only above a short signature-like tail."""
    for body in (
        "Problem one: login fails.\n--\nProblem two: invoice wrong.\n",
        "Problem one: login fails.\n__\nProblem two: invoice wrong.\n",
        "Problem one: login fails.\n\n—\n\nProblem two: the invoice is wrong, please fix it.\n",
    ):
        assert strip_quotes(body) == body.strip(), body
    for divider in ("--", "__", "—", "-- "):
        body = f"Please call me.\n\n{divider}\nJane Doe\nACME Ltd\n+44 20 7946 0000\n"
        assert strip_quotes(body) == "Please call me.", divider


def test_a_postscript_below_a_signature_is_kept():
    body = "Please call me.\n\n-- \nJane Doe\nACME Ltd\n\nP.S. Also delete my account."
    assert strip_quotes(body) == "Please call me.\n\nP.S. Also delete my account."
    bare = body.replace("-- ", "--")  # a bare "--" over a postscript is no signature at all
    assert strip_quotes(bare) == bare
    body = "Bitte zurückrufen.\n-- \nJana Schmidt\nPS: Die Rechnung bitte auch.\n"
    assert strip_quotes(body) == "Bitte zurückrufen.\n\nPS: Die Rechnung bitte auch."
    body = "Please call me.\n\nSent from my iPhone\n\n-- \nJane Doe\nP.S. Also delete my account."
    assert strip_quotes(body) == (
        "Please call me.\n\nSent from my iPhone\n\nP.S. Also delete my account.")


def test_a_mailing_list_footer_below_an_underscore_rule_is_dropped():
    body = ("How do I reset the counter?\n\n-Ann\n\n" + "_" * 47 + "\nprinters mailing list\n"
            "printers@lists.example.org\nhttps://lists.example.org/mailman/listinfo/printers\n")
    assert strip_quotes(body) == "How do I reset the counter?\n\n-Ann"


def test_customer_text_below_an_underscore_rule_is_kept():
    """A plain list, a postscript, dates, order or phone numbers, a link or the customer's
    sentences under a rule are the customer's, not a footer: only a list's own footer (its
    name, its address or page, no sentence) is one."""
    for body in (
        "Here is my order:\n\n" + "_" * 20 + "\nToner, black\nPaper, A4",
        "See you then.\n\n" + "_" * 20 + "\nP.S. Call me at +44 20 7946 0000 first.",
        "Hello,\n\n__________\nI ordered on 2024-03-01 and was charged twice.\n"
        "Please refund one payment.",
        "My order is broken. Details:\n____________________\nOrder 10023456\n"
        "Charged twice on 2024-03-01",
        "Please call me back.\n__________\nMy number: +44 20 7946 0958\nI am free after 5.",
        "The error is on this page:\n__________\nhttps://shop.example.com/checkout\n"
        "Screenshot: https://img.example.com/a.png",
        "How do I leave the mailing list?\n__________\nI tried https://lists.example.org/"
        "listinfo/printers\nbut it says my address is unknown.",
    ):
        assert strip_quotes(body) == body, body


def test_mobile_footers_in_more_languages_are_dropped():
    reply = "Please call me back."
    for footer in (
        "Verstuurd vanaf mijn iPhone", "Wysłane z iPhone'a", "Odesláno z iPhonu",
        "Inviato dal mio smartphone Samsung", "Trimis de pe iPhone-ul meu",
        "Надіслано з iPhone", "iPhone'umdan gönderildi", "Az iPhone-omról küldve",
        "Obtener Outlook para iOS", "Télécharger Outlook pour Android",
        "Outlook für iOS herunterladen", "Von Outlook für Android gesendet",
    ):
        assert strip_quotes(f"{reply}\n\n{footer}") == reply, footer


def test_a_sentence_that_starts_like_a_mobile_footer_is_kept():
    body = "Hello,\n\nSent from my laptop but it never arrived.\nPlease resend the invoice."
    assert strip_quotes(body) == body


def test_shipping_sentences_like_mobile_footers_are_kept():
    """ "Dikirim dari", "Verstuurd met", "Odesláno z" and their kin also say where a parcel came
    from: without a phone, tablet or mail app named they are the customer's sentence."""
    for body in (
        "Halo,\nDikirim dari gudang Jakarta kemarin.\nTapi paketnya belum sampai sampai sekarang."
        "\nTolong dicek.",
        "Hallo,\nVerstuurd met PostNL op maandag.\n"
        "Het pakket is nooit aangekomen, graag een terugbetaling.",
        "Dobrý den,\nOdesláno z Prahy 3. března.\nBalík stále nedorazil.",
        "Hello,\nΑποστολή από την αποθήκη χθες.\nΔεν έχει φτάσει ακόμα.",
        "Добрий день,\nНадіслано з Києва вчора.\nАле посилки досі немає.",
        "Xin chào,\nGửi từ kho Hà Nội hôm qua.\nNhưng tôi vẫn chưa nhận được.",
        "Buongiorno,\nInviato dal mio negozio online.\nMa il pacco non è mai arrivato.",
        "Thanks.\n\nVerstuurd met PostNL op maandag.",
        "Thanks.\n\nSent from the warehouse on Monday.",
    ):
        assert strip_quotes(body) == body, body


def test_a_mobile_footer_ends_the_reply_only_where_nothing_the_customer_wrote_follows():
    """Below it a name, a number or quoted lines may follow, not the customer's sentences."""
    reply = "Please call me back."
    assert strip_quotes(f"{reply}\n\nSent from my iPhone\n\nJane Doe\n+44 20 7946 0000\n"
                        "> old text\n") == reply
    assert strip_quotes(f"{reply}\n\nSent from my iPhone\n\n-- \nJane Doe, ACME Ltd") == reply
    for body in (
        f"{reply}\n\nSent from my iPhone\n\nThe screen is cracked, please replace it.",
        "Hello,\nSent from my iPhone\nThe screen is cracked.\nPlease replace it.",
        f"{reply}\nVerstuurd vanaf mijn iPhone\nHet scherm is kapot.",
    ):
        assert strip_quotes(body) == body, body


def test_a_help_desk_reply_above_this_line_marker_ends_the_reply():
    body = ("Yes, Tuesday works.\n\n##- Please type your reply above this line -##\n\n"
            "Your request 123 has been updated.\n")
    assert strip_quotes(body) == "Yes, Tuesday works."
    near = "Your form says to reply above this line, which confused me.\nIt still fails."
    assert strip_quotes(near) == near


def test_pasted_prompt_sessions_are_kept():
    """ "SQL> ", "mysql> " or "irb> " lines look like Supercite's "C> " quote prefix, but in a
    support mail they are the customer's pasted session: why "Name> " lines are never dropped."""
    for body in (
        "Here is the output:\n\nSQL> select count(*) from orders;\n\n  COUNT(*)\n"
        "----------\n        42\n\nSQL>\n\nIt should be 43.",
        "Still broken:\nmysql> show tables;\nmysql>\nmysql> quit\nPlease advise.",
    ):
        assert strip_quotes(body) == body, body
    below = ("Hi,\nOn Mon, 3 Jun 2024 at 10:12, Acme <help@acme.test> wrote:\n> Which count?\n\n"
             "irb> Order.count\n=> 42\n")
    assert strip_quotes(below) == "Hi,\n\nirb> Order.count\n=> 42"


def test_closings_and_sign_offs_are_kept_but_the_history_below_goes():
    """ "Regards, Jane" and "-Jane" are the customer's words (upstream corpora hide them as
    signatures); only an RFC 3676 or divider signature block, and the quote, are dropped."""
    for reply in ("Great, thanks!\n\n-Jane", "Can you help?\n\nRegards,\n\nJane Doe"):
        body = f"{reply}\n\nOn Mon, 3 Jun 2024 at 10:12, Acme <help@acme.test> wrote:\n> old\n"
        assert strip_quotes(body) == reply, reply
    assert strip_quotes("Great!\n\n—\nJane Doe\nCTO at Example\n\n@example") == "Great!"


def test_answers_between_quoted_lines_below_a_gmail_attribution():
    """Gmail leaves a blank line under the attribution; an answer right after an empty "> "
    line cannot be a wrapped quoted line."""
    body = ("See my answers below.\n\nOn Mon, 3 Jun 2024 at 10:12, Acme <help@acme.test> wrote:"
            "\n\n> Which model is it?\n>\nThe LX-200.\n\n> And the firmware?\n\n2.1.4\n")
    assert strip_quotes(body) == "See my answers below.\n\nThe LX-200.\n\n2.1.4"


def test_a_bottom_post_keeps_answers_below_a_second_unquoted_attribution():
    body = (
        "On Mon, 3 Jun 2024 at 10:12, Acme <help@acme.test> wrote:\n\n"
        "It still fails after the update.\n\n"
        "On Sun, 2 Jun 2024 at 09:00, Ann <ann@customer.test> wrote:\n\n"
        "> Please try the update.\n>\nI did, twice.\n"
    )
    assert strip_quotes(body) == "It still fails after the update.\n\nI did, twice."


def test_one_blank_line_stays_where_a_quote_was_removed():
    body = "> Which browser?\n\nFirefox.\n\n> Which OS?\n\nUbuntu.\n"
    assert strip_quotes(body) == "Firefox.\n\nUbuntu."


def test_long_lines_and_many_lines_stay_fast():
    """Every inbound mail runs these rules: a 100 KB line or 100 KB of short lines must not
    trigger backtracking (a 100 KB line of "On " took minutes in the library's pattern)."""
    import time

    units = ("On ", "Sent from my ", "_", "<a@b.test> ", "Quoting Ann <", "1/2/2024 10:12 ",
             "On x\n", "__________\n", "\n", "> q\n\nanswer\n")
    started = time.perf_counter()
    for unit in units:
        strip_quotes("Hi\n\n" + unit * (100_000 // len(unit)))
    assert time.perf_counter() - started < 10


def test_stacked_attributions_and_runs_of_spaces_stay_fast():
    """2,000 stacked attributions (each level of a bottom post used to scan the rest again:
    35 s) and a run of spaces inside a line that ends like an attribution or a separator
    ("\\s*[:：]?\\s*$" tried every split of it: 23 s); each now takes well under a second."""
    import time

    for text in (
        "\n\n".join(["On Mon, 3 Jun 2024 at 10:12, Ann <a@b.cd> wrote:"] * 2000),
        "\n\n".join(["-----Original Message-----"] * 4000),
        "\n\n".join(["On Mon, 3 Jun 2024 at 10:12, Ann <a@b.cd> wrote:\n> q\nanswer"] * 2000),
        "hi\n1/1/1 <a@b>" + " " * 100_000 + "x",
        "hi\n-----Original Message-----" + " " * 100_000 + "x",
        "hi\nSent from my iPhone" + " " * 100_000 + "x",
        "\n".join(["Sent from my iPhone", "Real text."] * 10_000),
        "hi\n1.1.1<" + "a@" * 50_000,  # "[^<>\\s]+@[^<>\\s]+>" tried every "@": 8 s
        "hi\nx 10:15 y\n<" + "a@" * 50_000,  # the same, on a second line uncut: 8.6 s
        "hi\nQuoting Ann <" + "a@" * 50_000,
    ):
        started = time.perf_counter()
        strip_quotes(text)
        assert time.perf_counter() - started < 5, text[:60]


def test_gmail_html_quote_container_is_dropped():
    raw = (
        b"From: a@example.com\r\nTo: help@acme.test\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<div dir="ltr">New answer here</div><br><div class="gmail_quote">'
        b'<div class="gmail_attr">Some header line without the usual verb</div>'
        b'<blockquote class="gmail_quote">Old stuff</blockquote></div>'
    )
    assert reply_text(parse(raw)) == "New answer here"


def test_outlook_html_divrplyfwdmsg_and_everything_after_is_dropped():
    raw = (
        b"From: a@example.com\r\nSubject: RE: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><div>Works now.</div><div id=\"appendonsend\"></div><hr>"
        b"<div id=\"divRplyFwdMsg\"><b>From:</b> Support</div><div>Old reply</div>"
        b"</body></html>"
    )
    assert reply_text(parse(raw)) == "Works now."


def test_apple_mail_blockquote_cite_is_dropped():
    raw = (
        b"From: a@example.com\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<div>Fine by me.<br><div><blockquote type=\"cite\"><div>Old</div></blockquote>"
        b"</div></div>"
    )
    assert reply_text(parse(raw)) == "Fine by me."


def test_plain_text_mail_uses_text_rules():
    raw = (
        b"From: a@example.com\r\nSubject: Re: x\r\n\r\nThanks a lot!\r\n\r\n"
        b"-----Original Message-----\r\nFrom: Support\r\nSent: today\r\n\r\nold\r\n"
    )
    assert reply_text(parse(raw)) == "Thanks a lot!"


# -- the guarded header pattern finds what the library's own finds -----------------------------

HEADER_LINES = (
    "On Mon, 3 Mar 2025 at 10:12, Ann Lee <ann@example.com> wrote:",
    "> On Tue, Jan 7, 2025 at 9:00 AM Bob <bob@example.org>",
    "wrote:",
    "Am 03.03.2025 um 10:12 schrieb Anna Schmidt <anna@example.de>:",
    "Le lun. 3 mars 2025 à 10:12, Marie <marie@example.fr> a écrit :",
    "El lun, 3 mar 2025 a las 10:12, Ana (<ana@example.es>) escribió:",
    "Il giorno lun 3 mar 2025 alle ore 10:12 Luca ha scritto:",
    "Op ma 3 mrt. 2025 om 10:12 schreef Jan <jan@example.nl>:",
    "Den mån 3 mars 2025 kl 10:12 skrev Eva <eva@example.se>:",
    "Dne 3. 3. 2025 v 10:12 Petr <petr@example.cz> napsal(a):",
    "2025年3月3日(月) 10:12 山田 <yamada@example.jp>:",
    "2025년 3월 3일 (월) 오전 10:12, 김 <kim@example.kr>님이 작성하였습니다:",
    "2025年3月3日 10:12 王 <wang@example.cn> 写道：",
    "From: Ann Lee <ann@example.com>", "Sent: Monday, March 3, 2025 10:12 AM",
    "To: Support <support@acme.test>", "Subject: RE: Printer", "*From:* Ann", "*Sent:* today",
    "Von: Anna", "Gesendet: Montag", "An: Support", "Betreff: Drucker",
    "De : Marie", "Envoyé : lundi", "De: Ana", "Enviado: lunes", "Asunto: Impresora",
    "Od: Jan", "Wysłano: poniedziałek", "Fra: Ole", "Sendt: mandag", "Emne: Printer",
    "发件人: 王", "发送时间: 2025年3月3日", "보낸 사람: 김", "제목: 프린터",
    "-----Original Message-----", "> From: quoted", "> To: quoted", "",
    "Thanks, the printer works again.", "Call me at 10:30 tomorrow: it is urgent.",
    "Onboarding went fine.", "To: do list", "From my side: all good.",
)


def header_texts(count: int = 400) -> list[str]:
    """Mixes of reply text and quote headers in many languages, in a fixed random order."""
    import random

    rng = random.Random(7)
    return ["\n".join(rng.choices(HEADER_LINES, k=rng.randint(1, 14))) for _ in range(count)]


def test_the_guarded_header_pattern_finds_what_the_librarys_finds():
    """The guard in front of mail-parser-reply's pattern only skips positions where none of
    its alternatives can start; it must never change a match, nor where one starts (several
    start at the newline before a header line)."""
    texts = header_texts()
    if CORPORA.is_dir():
        # Each file's first 32 KB: past that the corpora hold base64 parts and long quotes
        # (up to 1.5 MB a file) in which neither pattern matches anything (all 788 matches of
        # the full files, in all 355 files with one, lie in their first 16 KB), yet the
        # library's pattern spends seconds trying its alternatives at every character there.
        texts += [read(p)[:32 * 1024] for p in sorted(CORPORA.rglob("*")) if p.is_file()
                  and p.suffix in (".txt", ".eml", ".email", "")][:3000]
    found = 0
    for text in texts:
        expected = LIBRARY_HEADERS.findall(text)
        assert _HEADERS.findall(text) == expected, text
        found += bool(expected)
    assert found > 200  # the texts do exercise the headers


# -- shared corpora: share of upstream expectations met ----------------------------------------

# Where we knowingly differ from upstream, and why.
TRIMMER_DISAGREE = {
    # We drop interleaved "> " lines: they are not the customer's words. Upstream keeps them
    # (and the quote of a bottom post) in the visible text.
    "quote_and_text", "embedded_email_16", "embedded_email_17",
    # ... and also "C> " lines (Supercite prefixes), which we leave in: a prefix of letters
    # before ">" is too easily the customer's own text ("SQL> ", "mysql> " sessions, see
    # test_pasted_prompt_sessions_are_kept). Upstream also keeps that mail's "> " quote, and
    # the sentence under its underscore rule is kept as the customer's (no list footer).
    "embedded_email_7",
}


def test_email_reply_trimmer_corpus():
    root = corpus("email_reply_trimmer")
    manifest = json.loads((root / "_expectations" / "manifest.json").read_text())
    cases = manifest["cases"]
    hits, misses = 0, []
    for case in cases:
        got = strip_quotes(read(root / case["input"]).strip())
        want = read(root / case["trimmed"]).strip()
        if got == want:
            hits += 1
        else:
            misses.append(Path(case["input"]).stem)
    share = hits / len(cases)
    print(f"email_reply_trimmer: {hits}/{len(cases)} = {share:.0%}; misses: {misses}")
    assert share >= 0.91  # measured 60/64, all misses in TRIMMER_DISAGREE


def _unchanged(got: str, body: str) -> bool:
    """Upstream found nothing to remove: the reply is the whole body. Spaces at line ends are
    not compared: strip_quotes drops them on purpose, a reader never sees them."""
    return [x.rstrip() for x in got.strip().splitlines()] == [
        x.rstrip() for x in body.strip().splitlines()]


def _github_checks(case: dict, got: str, body: str) -> bool:
    """Upstream asserts fragments; we check what a reader sees: visible text and hidden parts."""
    if "visible_text" in case:
        return got.strip() == case["visible_text"].strip()
    hidden = case.get("hidden")
    ok = True
    for index, value in case.get("fragment_equals", {}).items():
        i = int(index)
        if i == 0 or (hidden and not hidden[i]):
            ok &= value.strip() in got
        elif hidden and hidden[i] and value.strip():
            ok &= value.strip() not in got
    for index, patterns in case.get("fragment_regex", {}).items():
        i = int(index)
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            found = re.search(pattern, got, re.MULTILINE) is not None
            if i == 0 or (hidden and not hidden[i]):
                ok &= found
            elif (hidden and hidden[i]) or pattern.startswith("^On"):
                ok &= not found
    if case.get("fragments") == 1:
        ok &= _unchanged(got, body)
    return ok


def _share(name: str, cases: list[dict], check) -> float:
    root = corpus(name)
    hits, misses = 0, []
    scored = 0
    for case in cases:
        body = read(root / case["input"])
        got = strip_quotes(body)
        verdict = check(case, got, body)
        if verdict is None:
            continue
        scored += 1
        hits += verdict
        if not verdict:
            misses.append(Path(case["input"]).stem)
    share = hits / scored
    print(f"{name}: {hits}/{scored} = {share:.0%}; misses: {misses}")
    return share


def test_github_email_reply_parser_corpus():
    root = corpus("github_email_reply_parser")
    cases = json.loads((root / "_expectations" / "expectations.json").read_text())["cases"]
    assert _share("github_email_reply_parser", cases, _github_checks) >= 0.77  # measured 18/22
    # Misses: upstream hides "-Name" sign-offs (email_1_1, email_1_3), which we keep as the
    # customer's closing, and keeps attributions and interleaved quotes visible (email_1_2,
    # email_1_8), which we drop: both on purpose, none fixable without one or the other.


def _zapier_checks(case: dict, got: str, body: str) -> bool | None:
    checks: list[bool] = []
    if "visible_text" in case:
        checks.append(got.strip() == case["visible_text"].strip())
    if "reply_stripped" in case:
        checks.append(got.strip() == case["reply_stripped"])
    checks += [s in got for s in case.get("reply_contains", [])]
    checks += [s not in got for s in case.get("visible_text_not_contains", [])]
    hidden = case.get("hidden")
    for index, subs in case.get("fragment_contains", {}).items():
        i = int(index)
        for sub in subs:
            if i == 0:
                checks.append(sub in got)
            elif hidden and hidden[i] and len(sub) > 3:
                checks.append(sub not in got)
    if case.get("fragments") == 1:
        checks.append(_unchanged(got, body))
    return all(checks) if checks else None


def test_zapier_email_reply_parser_corpus():
    root = corpus("zapier_email_reply_parser")
    cases = json.loads((root / "_expectations" / "expectations.json").read_text())["cases"]
    assert _share("zapier_email_reply_parser", cases, _zapier_checks) >= 0.93  # measured 15/15


def _crisp_checks(case: dict, got: str, body: str) -> bool | None:
    """Trust the visible-text asserts and fragment 0 (the reply); fragment counts only as
    "nothing removed" when upstream found a single fragment."""
    checks: list[bool] = []
    first_fragment_known = False
    for a in case["asserts"]:
        kind, index = a["type"], a.get("index", 0)
        if kind in ("visible_text_equals", "visible_text_trimmed_equals") or (
            kind in ("fragment_equals", "fragment_trimmed_equals") and index == 0
        ):
            checks.append(got.strip() == a["value"].strip())
            first_fragment_known = True
        elif kind == "fragment_regex":
            found = re.search(a["regex_js"].replace("\\/", "/"), got, re.MULTILINE) is not None
            if index == 0:
                checks.append(found)
            elif a["regex_js"].startswith("^On"):
                checks.append(not found)
    for a in case["asserts"]:
        if a["type"] == "fragment_count" and a["value"] == 1 and not first_fragment_known:
            checks.append(_unchanged(got, body))
    return all(checks) if checks else None


def test_crisp_email_reply_parser_corpus():
    root = corpus("crisp_email_reply_parser")
    data = json.loads((root / "_expectations" / "expectations.json").read_text())
    cases = []
    for case in data["cases"]:
        if case["input"] and case["asserts"]:
            asserts = [dict(a) for a in case["asserts"]]
            for a in asserts:
                if a.get("value") == "COMMON_FIRST_FRAGMENT":
                    a["value"] = data["COMMON_FIRST_FRAGMENT"]
            cases.append({"input": case["input"][0], "asserts": asserts})
    assert _share("crisp_email_reply_parser", cases, _crisp_checks) >= 0.92  # measured 64/69
    # Misses: closings ("Regards, John") that upstream hides and we keep on purpose, an "—"
    # signature we drop and upstream keeps (email_emoji), and email_2, whose fragment 0 ("Hi,")
    # is only the part above a bottom post: our visible text rightly holds the answer below.
    # email_15 and email_german_3 have text below a mobile footer ("Sent from my Wiko ...",
    # "Gesendet von Outlook für Android"): upstream cuts there, we keep it, since a footer ends
    # the reply only with nothing but a signature or quoted lines below it (a customer's words
    # lost weigh more than an old message kept).
