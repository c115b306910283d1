"""`workestra inspect`: one JSON line per file saying what the pipeline would decide."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from tests.conftest import customer_mail


def run_inspect(tmp_path, *files, env=None):
    r = subprocess.run([sys.executable, "-m", "gateway", "inspect", *map(str, files)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "WORKESTRA_DATA_DIR": str(tmp_path / "d"),
                            **(env or {})})
    return r, [json.loads(line) for line in r.stdout.splitlines()]


def test_inspect_reports_every_decision_without_storing(tmp_path):
    reply = customer_mail(
        "Re: [TKT-0042] Printer is on fire",
        "Thanks, that worked.\n\nOn Mon, 23 Nov 2026, Acme Support <support@acme.test> wrote:\n"
        "> Please restart it.\n", In_Reply_To="<abc@acme.test>", References="<abc@acme.test>")
    reply.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf",
                         filename="invoice.pdf")
    ooo = customer_mail("Out of Office: Printer", "I am away.", Auto_Submitted="auto-replied")
    (tmp_path / "reply.eml").write_bytes(reply.as_bytes())
    (tmp_path / "ooo.eml").write_bytes(ooo.as_bytes())

    r, (first, second) = run_inspect(tmp_path, tmp_path / "reply.eml", tmp_path / "ooo.eml")
    assert r.returncode == 0, r.stderr
    assert first["from"] == {"name": "Jane Customer", "address": "jane@customer.test"}
    assert first["to"] == [{"name": "", "address": "support@acme.test"}]
    assert first["subject"] == "Re: [TKT-0042] Printer is on fire"
    assert first["in_reply_to"] == "abc@acme.test" and first["references"] == ["abc@acme.test"]
    assert first["reply_text"].strip() == "Thanks, that worked."
    assert "Please restart it." in first["text"]
    assert first["attachments"] == [{
        "filename": "invoice.pdf", "content_type": "application/pdf", "size": 13,
        "sha256": hashlib.sha256(b"%PDF-1.4 tiny").hexdigest(), "inline": False}]
    assert first["classification"] == "normal" and first["original_sender"] is None
    assert first["thread"]["method"] == "subject" and first["thread"]["ticket"] == "TKT-0042"
    assert first["decision"] == "reply on TKT-0042 (by subject)" and first["dkim"] == "none"
    assert second["classification"] == "auto_reply"
    assert second["decision"].startswith("ignored: auto_reply (")
    assert not (tmp_path / "d" / "workestra.db").exists()  # nothing stored


def test_inspect_reports_an_unreadable_file_and_exits_1(tmp_path):
    r, [result] = run_inspect(tmp_path, tmp_path / "missing.eml")
    assert r.returncode == 1 and "error" in result


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_inspect_decides_as_delivery_does_for_subject_only_replies(tmp_path, services):
    """The same files, inspected against the data dir and then delivered: the same outcome.
    Only the subject names the ticket, so who sent it (From and envelope) decides."""
    from tests.test_pipeline import deliver

    first = deliver(services, customer_mail("Printer is on fire", "Room 4."))
    subject = "Re: [TKT-0001] Printer is on fire"
    cases = {  # file -> (its bytes, the envelope sender delivery sees, what both say)
        "customer.eml": (customer_mail(subject, "It works now."), "jane@customer.test",
                         ("reply on TKT-0001", "comment", "reply on TKT-0001")),
        "stranger.eml": (customer_mail(subject, "Me too.", sender="Mallory <m@evil.test>"),
                         "m@evil.test", ("new ticket for m@evil.test", "new_ticket", "")),
        "forged.eml": (customer_mail(subject, "Close it."), "attacker@evil.test",
                       ("held as internal note on TKT-0001", "comment",
                        "held as internal note on TKT-0001")),
    }
    data = tmp_path / "data"
    for name, (msg, envelope, _) in cases.items():
        if name != "customer.eml":  # a delivering server's Return-Path, as a saved mail has
            msg["Return-Path"] = f"<{envelope}>"
        (tmp_path / name).write_bytes(msg.as_bytes())
    r, results = run_inspect(tmp_path, *(tmp_path / n for n in cases),
                             env={"WORKESTRA_DATA_DIR": str(data)})
    assert r.returncode == 0, r.stderr
    for result, (name, (msg, envelope, want)) in zip(results, cases.items(), strict=True):
        decision, outcome, reason = want
        assert result["decision"].startswith(decision), (name, result["decision"])
        row = deliver(services, msg, mail_from=envelope)
        assert row.outcome == outcome and row.reason.startswith(reason), (name, row.reason)
    assert results[0]["envelope_sender"]["from"].startswith("From")
    assert results[1]["envelope_sender"] == {"address": "m@evil.test", "from": "Return-Path"}
    r, [judged] = run_inspect(tmp_path, tmp_path / "customer.eml", "--mail-from",
                              "attacker@evil.test", env={"WORKESTRA_DATA_DIR": str(data)})
    assert judged["decision"].startswith("held as internal note on TKT-0001"), judged
    assert first.outcome == "new_ticket"
