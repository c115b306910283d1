"""Classification: customers' mail stays normal; robots, bounces, lists and loops are caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.inbound.bounce import delivery_failed
from gateway.inbound.classify import classify
from gateway.inbound.parse import parse
from tests.conftest import corpus


def mail(headers: str, body: str = "Hello"):
    return parse((headers.strip() + "\n\n" + body).encode("utf-8"))


CUSTOMER = "From: Jane <jane@example.com>\nTo: help@acme.test\nSubject: My order is late"


def test_customer_mail_is_normal():
    assert classify(mail(CUSTOMER)) == ("normal", [])


@pytest.mark.parametrize(
    "extra, reason",
    [
        ("Auto-Submitted: auto-replied", "auto-submitted"),
        ("X-Autoreply: yes", "x-autoreply"),
        ("X-Autorespond: Out of office", "x-autorespond"),
        ("Precedence: bulk", "precedence-bulk"),
        ("Precedence: auto_reply", "precedence-bulk"),
    ],
)
def test_auto_reply_headers(extra, reason):
    kind, reasons = classify(mail(CUSTOMER + "\n" + extra))
    assert kind == "auto_reply" and reason in reasons


def test_auto_submitted_no_and_suppress_header_alone_stay_normal():
    assert classify(mail(CUSTOMER + "\nAuto-Submitted: no"))[0] == "normal"
    assert classify(mail(CUSTOMER + "\nX-Auto-Response-Suppress: All"))[0] == "normal"


@pytest.mark.parametrize(
    "subject, body",
    [("Out of Office: My order", "I am currently out of the office until 3 June."),
     ("Automatic reply: ticket 12", "This is an automatic reply. I'll answer when I'm back."),
     ("Abwesenheitsnotiz: Anfrage", "Ich bin bis zum 12. Mai nicht im Büro."),
     ("Automatische Antwort: Rechnung", "Vielen Dank. Ich bin vom 1. bis 5. Juli im Urlaub."),
     ("Réponse automatique : commande", "Je suis absente jusqu'au 4 août."),
     ("Respuesta automática: pedido", "Estoy fuera de la oficina hasta el lunes."),
     ("Risposta automatica: ordine", "Sono fuori ufficio fino al 10 giugno."),
     ("Automatisch antwoord: x", "Ik ben afwezig tot en met vrijdag."),
     ("Resposta automática: pedido", "Estou ausente até segunda-feira."),
     ("Automatiskt svar: order", "Jag är ledig till och med 15 juli."),
     ("Out of office", "I'm on annual leave with limited access to email.")],
)
def test_out_of_office_subjects(subject, body):
    kind, reasons = classify(mail(f"From: a@example.com\nSubject: {subject}", body))
    assert kind == "auto_reply" and "ooo-subject" in reasons


def test_out_of_office_subject_with_exchange_suppress_header():
    headers = "From: a@example.com\nSubject: Automatic reply: x\nX-Auto-Response-Suppress: All"
    assert classify(mail(headers, "Back Monday."))[0] == "auto_reply"


@pytest.mark.parametrize(
    "subject, body",
    [("Out of office hours support?", "Hello"),
     ("Question about your auto reply feature", "Hello"),
     ("Re: undeliverable parcel", "Hello"),
     ("I was on vacation, now the app fails", "Hello"),
     ("I was out of office last week, my printer broke", "I am back now and it won't print."),
     ("Abwesend war ich, jetzt fehlt die Rechnung", "Während ich abwesend war, kam keine.")],
)
def test_customer_subjects_that_mention_these_words_stay_normal(subject, body):
    assert classify(mail(f"From: a@example.com\nSubject: {subject}", body))[0] == "normal"


NEW_MAIL_OOO_WORDS = [
    ("On vacation - package lost", "I was on vacation and the package never arrived."),
    ("Abwesend - Paket beim Nachbarn?", "Ich war abwesend. Liegt das Paket beim Nachbarn?"),
    ("Away - order missing", "Hello, my order 55 never came."),
    ("Urlaub - Buchung stornieren?", "Wir möchten unseren Urlaub stornieren."),
    ("Out of office: chair broke", "Our out of office chair broke after a week."),
    ("Fwd: On vacation - package lost", "See below, the parcel is gone."),
]


@pytest.mark.parametrize("subject, body", NEW_MAIL_OOO_WORDS)
def test_new_mail_starting_with_out_of_office_words_stays_normal(subject, body):
    assert classify(mail(f"From: a@example.com\nSubject: {subject}", body)) == ("normal", [])


@pytest.mark.parametrize("subject, body", NEW_MAIL_OOO_WORDS)
@pytest.mark.parametrize(
    "extra",
    ["In-Reply-To: <t-42.abc@acme.test>", "References: <t-42.abc@acme.test>",
     "X-Auto-Response-Suppress: All"],
)
def test_out_of_office_words_corroborated_by_a_header(subject, body, extra):
    kind, reasons = classify(mail(f"From: a@example.com\nSubject: {subject}\n{extra}", body))
    assert kind == "auto_reply" and "ooo-subject" in reasons


@pytest.mark.parametrize("prefix", ["Re: ", "RE: ", "AW: ", "Sv: ", "[users] Re: "])
def test_out_of_office_words_after_a_reply_prefix(prefix):
    headers = f"From: a@example.com\nSubject: {prefix}On vacation - package lost"
    assert classify(mail(headers, "Hello"))[0] == "auto_reply"


@pytest.mark.parametrize(
    "subject, body",
    [("On vacation", "I am on vacation until 10 June with no access to email."),
     ("Abwesend", "Ich bin bis zum 10. Juni abwesend."),
     ("Away until Monday", "I'm away until Monday and will reply then.")],
)
def test_out_of_office_words_corroborated_by_a_responder_text(subject, body):
    assert classify(mail(f"From: a@example.com\nSubject: {subject}", body))[0] == "auto_reply"
    # Only the start of the body counts: a quoted notice far down does not.
    far = "Hello, my parcel is lost.\n" + "x " * 1100 + "\n> " + body
    assert classify(mail(f"From: a@example.com\nSubject: {subject}", far))[0] == "normal"


MORE_OOO_SUBJECTS = ["I'm out of the office", "I'm out of the office until 10 June",
                     "Je suis absente jusqu'au 10 juin", "Abwesenheit: Ihre Anfrage",
                     "Ich bin nicht im Büro", "Away until Monday", "Urlaub bis 10.6.",
                     "I’m away", "Je suis absent jusqu'au lundi"]


@pytest.mark.parametrize("subject", MORE_OOO_SUBJECTS)
def test_more_out_of_office_subjects_replying_to_our_mail(subject):
    headers = f"From: a@example.com\nSubject: {subject}: [TKT-0042] Where is my order?"
    assert classify(mail(headers + "\nIn-Reply-To: <t-42.abc@acme.test>"))[0] == "auto_reply"
    headers = f"From: a@example.com\nSubject: {subject}\nIn-Reply-To: <t-42.abc@acme.test>"
    kind, reasons = classify(mail(headers, "Thank you for your message."),
                             own_domains={"acme.test"})
    assert kind == "auto_reply" and "ooo-subject" in reasons


@pytest.mark.parametrize("subject", MORE_OOO_SUBJECTS)
def test_more_out_of_office_subjects_alone_stay_normal(subject):
    headers = f"From: a@example.com\nSubject: {subject}"
    assert classify(mail(headers, "Where is my parcel? It was due last week."))[0] == "normal"


@pytest.mark.parametrize(
    "subject",
    ["I'm out of ideas, the app crashes", "Away mode does not work", "Urlaubsantrag app bug",
     "Abwesenheitszeiten im Kalender falsch", "Awaiting my refund"],
)
def test_customer_subjects_near_the_new_words_stay_normal(subject):
    headers = f"From: a@example.com\nSubject: {subject}\nIn-Reply-To: <m1@example.com>"
    assert classify(mail(headers, "Hello"))[0] == "normal"


def test_a_customer_answering_a_ticket_about_a_vacation_stays_normal():
    # Our confirmation's subject is "[TKT-0042] On vacation - package lost": the customer's
    # answer echoes it, with or without "Re:", and names our Message-ID in In-Reply-To.
    for subject in ("Re: [TKT-0042] On vacation - package lost",
                    "[TKT-0042] On vacation - package lost",
                    "[TKT-0042] Re: On vacation - package lost"):
        headers = f"From: a@example.com\nSubject: {subject}\nIn-Reply-To: <t-42.abc@acme.test>"
        assert classify(mail(headers, "Any news?"), own_domains={"acme.test"}) == ("normal", [])


def test_dsn_bounce():
    raw = (
        "From: MAILER-DAEMON@mx.example.com\nSubject: Undelivered Mail Returned to Sender\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nfailed\n--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.com\n\nFinal-Recipient: rfc822; x@y.z\nAction: failed\n"
        "--b--\n"
    )
    kind, reasons = classify(parse(raw.encode()))
    assert kind == "bounce" and {"dsn-report", "mailer-daemon"} <= set(reasons)


def test_null_return_path_is_a_bounce_unless_auto_submitted():
    assert classify(mail(CUSTOMER + "\nReturn-Path: <>"))[0] == "bounce"
    ooo = classify(mail(CUSTOMER + "\nReturn-Path: <>\nAuto-Submitted: auto-replied"))
    assert ooo[0] == "auto_reply"


FAILURE_REPORT = ("Your message could not be delivered to the following recipients:\n"
                  "  bob@example.org\nRemote host said: 550 5.1.1 <bob@example.org> User unknown")


def test_bounce_subject_from_a_null_or_mangled_sender():
    # sendmail writes "From: <>" with Auto-Submitted; old Exchange mangles the postmaster.
    null = "From: <>\nSubject: Returned mail: see transcript for details"
    assert classify(mail(null + "\nAuto-Submitted: auto-generated (failure)"))[0] == "bounce"
    assert "bounce-subject" in classify(mail(null, FAILURE_REPORT))[1]
    mangled = "From: <Postmaster\\@mx.example.org@mx.example.org>\nSubject: Mail Delivery Warning"
    assert classify(mail(mangled, "Delivery has been postponed."))[0] == "bounce"


def test_bounce_subject_from_a_role_name_needs_a_failure_report():
    admin = "From: <admin@bank.example>\nSubject: Non-Delivery: your message"
    assert classify(mail(admin, FAILURE_REPORT))[0] == "bounce"
    gateway = "From: Symantec_AntiVirus_for_SMTP_Gateways@x.example\nSubject: Delivery failure"
    assert classify(mail(gateway, "Please do not resend."))[0] == "bounce"


@pytest.mark.parametrize(
    "sender, subject",
    [("Office Admin <admin@smallshop.example>", "Delivery failed: order 5531"),
     ("Acme Systems <orders@acmesystems.example>", "Undeliverable parcel 77"),
     ("Gateway Logistics <info@gateway-logistics.example>", "Delivery notification"),
     ("Foreign Exchange Desk <fx@bank.example>", "Delivery report for March"),
     ("Bob <bob@smtp-hosting.example>", "Undelivered goods")],
)
def test_parcel_delivery_subjects_from_people_stay_normal(sender, subject):
    body = "The courier says the parcel could not be delivered. Please send it again."
    assert classify(mail(f"From: {sender}\nSubject: {subject}", body))[0] == "normal"


@pytest.mark.parametrize(
    "sender, subject",
    [("Bounce Fitness <info@bouncefitness.com>", "Delivery failed for order 55"),
     ("Mailer Dept <mailer@printco.com>", "Undeliverable address on my invoice"),
     ("Mail Delivery Team <team@parcels.example>", "Delivery failure on order 9"),
     ("SMTP Hosting GmbH <info@smtp-hosting.example>", "Undelivered goods")],
)
def test_company_names_with_mail_system_words_are_people(sender, subject):
    body = "The courier says the parcel could not be delivered. Please send it again."
    assert classify(mail(f"From: {sender}\nSubject: {subject}", body)) == ("normal", [])
    # The same sender with a mail server's report in the body is one.
    assert classify(mail(f"From: {sender}\nSubject: {subject}", FAILURE_REPORT))[0] == "bounce"


@pytest.mark.parametrize(
    "sender",
    ["Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
     "Mail Delivery System <noreply@mx.example>",
     "MAILER-DAEMON <noreply@mx.example>",
     "Microsoft Outlook <outlook@contoso.example>",
     "System Administrator <sysadm@corp.example>",
     '"Mail Delivery Subsystem" <noreply@mx.example>',
     "<mail-delivery@mx.example>",
     "<bounces+abc=x@mx.example>",
     "<smtp-gateway@mx.example>",
     "<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@corp.example>"],
)
def test_mail_system_names_with_a_bounce_subject_are_bounces(sender):
    headers = f"From: {sender}\nSubject: Undeliverable: My order is late"
    kind, reasons = classify(mail(headers, "Delivery has failed to these recipients."))
    assert kind == "bounce" and "bounce-subject" in reasons


def test_a_postmaster_answering_us_is_a_person_unless_it_reports_a_failure():
    human = "From: Postmaster <postmaster@customer.example>\nSubject: Re: blocked mails"
    assert classify(mail(human, "We whitelisted your server, please try again."))[0] == "normal"
    assert classify(mail(human, FAILURE_REPORT))[0] == "bounce"
    assert classify(mail("From: postmaster@x.example\nSubject: Mail failure",
                         FAILURE_REPORT))[0] == "bounce"
    assert classify(mail("From: MAILER-DAEMON@x.example\nSubject: Re: x"))[0] == "bounce"


@pytest.mark.parametrize("subject", ["Question about invoice", "Undelivered parcel",
                                     "Mail failure", "Re: blocked mails"])
def test_a_postmaster_is_a_person_without_a_failure_report(subject):
    headers = f"From: postmaster@smallco.de\nSubject: {subject}"
    body = "The parcel was not delivered to us. Can you send it again?"
    assert classify(mail(headers, body)) == ("normal", [])
    assert classify(mail(headers, FAILURE_REPORT))[0] == "bounce"
    named = f"From: Postmaster <postmaster@smallco.de>\nSubject: {subject}"
    assert classify(mail(named, body))[0] == "normal"


def test_a_postmaster_delivery_status_report_is_a_bounce():
    raw = ("From: postmaster@smallco.de\nSubject: Delivery Status Notification (Failure)\n"
           'Content-Type: multipart/mixed; report-type=delivery-status; boundary="b"\n\n'
           "--b\nContent-Type: text/plain\n\nConfidential.\n--b--\n")
    assert classify(parse(raw.encode()))[0] == "bounce"
    # MAILER-DAEMON needs nothing more.
    assert classify(mail("From: MAILER-DAEMON@smallco.de\nSubject: Question"))[0] == "bounce"


def test_read_receipts_and_other_reports_are_automatic():
    raw = (
        "From: Jane <jane@example.com>\nSubject: Read: My order is late\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nYour message was read.\n--b\n"
        "Content-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; jane@example.com\nDisposition: manual-action/MDN-sent-manually;"
        " displayed\n--b--\n"
    )
    assert classify(parse(raw.encode())) == ("auto_reply", ["machine-report"])


def test_list_mail():
    assert classify(mail(CUSTOMER + "\nList-Id: <users.lists.example.org>"))[0] == "list"
    both = CUSTOMER + "\nList-Unsubscribe: <mailto:u@x>\nPrecedence: list"
    assert classify(mail(both)) == ("list", ["list-unsubscribe"])
    # A one-to-one sender with List-Unsubscribe alone is still a person writing to us.
    assert classify(mail(CUSTOMER + "\nList-Unsubscribe: <mailto:u@x>"))[0] == "normal"


GROUP = ("\nList-Id: <support-team.customer.example>\nPrecedence: list"
         "\nList-Unsubscribe: <mailto:support-team+unsubscribe@customer.example>"
         "\nIn-Reply-To: <t-42.abc@acme.test>")


def test_a_reply_to_our_mail_through_a_corporate_group_is_the_customer():
    ours = {"t-42.abc@acme.test"}.__contains__
    assert classify(mail(CUSTOMER + GROUP), is_own_message_id=ours) == ("normal", [])
    assert classify(mail(CUSTOMER + GROUP), own_domains={"acme.test"})[0] == "normal"
    # Not a reply to us: list traffic. A robot on the list is still caught by its headers.
    assert classify(mail(CUSTOMER + GROUP))[0] == "list"
    robot = CUSTOMER + GROUP + "\nAuto-Submitted: auto-replied"
    assert classify(mail(robot), is_own_message_id=ours)[0] == "auto_reply"


def test_only_a_failed_action_marks_our_mail_bounced():
    report = "Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; a@b.example\n"
    assert not delivery_failed((report + "Action: delayed\nStatus: 4.4.7\n").encode())
    assert not delivery_failed((report + "Action: delivered\nStatus: 2.0.0\n").encode())
    assert delivery_failed((report + "Action: failed\nStatus: 5.1.1\n").encode())
    assert delivery_failed((report + "Action: failure\nStatus: 553\n").encode())  # seen in use
    assert delivery_failed(b"Subject: failure notice\n\nSorry, no mailbox here by that name.")


def test_loops_win_over_everything():
    looped = CUSTOMER + "\nX-Loop: workestra\nAuto-Submitted: auto-replied\nList-Id: <l.x>"
    kind, reasons = classify(mail(looped))
    assert kind == "loop" and reasons[0] == "x-loop"
    own = "From: Support <Help@Acme.test>\nSubject: Re: x"
    assert classify(mail(own), own_addresses={"help@acme.test"}) == ("loop", ["own-address"])
    ours = CUSTOMER + "\nMessage-ID: <t-42.abc@acme.test>"
    assert classify(mail(ours), is_own_message_id=lambda m: m == "t-42.abc@acme.test")[0] == "loop"
    assert classify(mail(ours), own_domains={"acme.test"})[0] == "loop"


def test_custom_loop_header():
    headers = CUSTOMER + "\nX-Workestra-Loop: acme"
    assert classify(mail(headers), loop_header="X-Workestra-Loop", loop_value="acme")[0] == "loop"


def test_priority_bounce_over_auto_reply_over_list():
    headers = "From: postmaster@x.org\nSubject: hi\nPrecedence: bulk\nList-Id: <l.x>"
    assert classify(mail(headers, FAILURE_REPORT))[0] == "bounce"
    assert classify(mail(CUSTOMER + "\nPrecedence: junk\nList-Id: <l.x>"))[0] == "auto_reply"


def test_flufl_bounce_corpus_is_recognised_as_bounces():
    root = corpus("flufl_bounce")
    data = json.loads((root / "_expectations" / "expectations.json").read_text())
    files = sorted({case["input"] for case in data["cases"]})
    kinds = [classify(parse((root / f).read_bytes()))[0] for f in files]
    share = kinds.count("bounce") / len(files)
    ignored = sum(k != "normal" for k in kinds) / len(files)
    print(f"flufl_bounce: bounce {share:.0%}, not normal {ignored:.0%} of {len(files)}")
    # The one miss, simple_20, comes from a person-like address with a "RE: ..." subject and
    # a two-line text: nothing a customer's mail could not also have.
    assert share >= 0.98 and ignored >= 0.98  # measured 100/101 bounce, 100/101 not normal


# Mail upstream parses but that is no customer's; the header that proves it.
ZAMMAD_ROBOTS = {
    "mail018.box": "bounce",      # multipart/report; report-type=delivery-status, postmaster
    "mail019.box": "bounce",      # Return-Path: <> (spam with a null envelope sender)
    "mail035.box": "bounce",      # Return-Path: <> (loan spam)
    "mail043.box": "auto_reply",  # Precedence: bulk (a newsletter, List-Unsubscribe too)
    "mail052.box": "bounce",      # From: MAILER-DAEMON, Return-Path: <>
    "mail053.box": "bounce",      # multipart/report; report-type=delivery-status
    "mail063.box": "bounce",      # multipart/report; report-type=delivery-status
    "mail089.box": "auto_reply",  # Auto-Submitted: auto-generated (ServiceNow notification)
    "mail090.box": "auto_reply",  # Auto-Submitted: auto-generated (ServiceNow notification)
    "mail092.box": "bounce",      # multipart/report; report-type=delivery-status
}


def test_zammad_customer_mail_is_not_taken_for_robots():
    zammad = corpus("zammad")
    root = zammad / "test" / "data" / "mail"
    data = json.loads((zammad / "_expectations" / "expectations.json").read_text())
    labelled = {Path(b["input"]).name: b["label"] for b in data["behaviour_labels"]}
    results = {p.name: classify(parse(p.read_bytes())) for p in sorted(root.glob("*.box"))}
    for name, label in labelled.items():
        if "bounce" in label and name in results:
            assert results[name][0] == "bounce", name
    for name, kind in ZAMMAD_ROBOTS.items():
        assert results[name][0] == kind, (name, results[name])
    others = [r for n, r in results.items() if n not in labelled and n not in ZAMMAD_ROBOTS]
    normal = sum(kind == "normal" for kind, _ in others) / len(others)
    print(f"zammad non-bounce mail classified normal: {normal:.0%} of {len(others)}")
    assert normal >= 0.98  # measured 86/86
