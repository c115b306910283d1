"""`workestra inspect`: one JSON line per file saying what the pipeline would decide."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

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
