"""Outbound DKIM: `workestra dkim generate` prints a record that verifies the mail we send."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import dkim
import pytest

from gateway.config import DkimKey
from gateway.dkim_keys import generate
from tests.conftest import Zone, customer_mail, make_settings
from tests.test_pipeline import deliver


def published(output: str) -> tuple[str, str]:
    """The record name and TXT value from what the command printed."""
    m = re.search(r'^(\S+)\. IN TXT "(v=DKIM1;[^"]+)"$', output, re.MULTILINE)
    assert m, output
    return m.group(1), m.group(2)


def zone_with(name: str, value: str) -> Zone:
    zone = Zone()
    zone.publish(name, value)
    return zone


def signature_tags(raw: bytes) -> dict[str, str]:
    header = raw.split(b"\r\n\r\n", 1)[0].decode()
    value = re.search(r"^DKIM-Signature:(.*?)(?=^\S)", header + "\r\nX: end", re.M | re.S)
    assert value, header
    return {k.strip(): "".join(v.split()) for k, v in
            (t.split("=", 1) for t in value.group(1).split(";") if "=" in t)}


def test_generated_key_signs_the_next_confirmation_over_smtp(gateway, sink):
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "dkim", "generate", "acme", "--selector", "s1"],
        env=gateway.env, capture_output=True, text=True, timeout=60, check=True).stdout
    name, txt = published(out)
    assert name == "s1._domainkey.acme.test"

    gateway.send(customer_mail("Printer is on fire", "Room 4."), "jane@customer.test",
                 ["support@acme.test"])
    conf = sink.wait_for(lambda m: "jane@customer.test" in str(m["To"]))
    raw = sink.raw_of(conf)
    assert dkim.verify(raw, dnsfunc=zone_with(name, txt))

    tags = signature_tags(raw)
    assert tags["d"] == "acme.test" and tags["s"] == "s1" and "l" not in tags  # whole body
    signed = set(tags["h"].lower().split(":"))
    assert {"from", "to", "subject", "date", "message-id", "reply-to",
            "in-reply-to", "references", "auto-submitted"} <= signed
    # What a receiver would see changed in transit no longer verifies.
    body_changed = raw.replace(b"Room 4", b"Room 5") if b"Room 4" in raw else raw + b"x\r\n"
    assert not dkim.verify(body_changed, dnsfunc=zone_with(name, txt))
    assert not dkim.verify(raw.replace(b"Printer is on fire", b"Printer is fine", 1),
                           dnsfunc=zone_with(name, txt))


def test_generate_twice_keeps_the_key_unless_rotated(tmp_path, services, monkeypatch):
    from gateway.cli import build_parser, main

    env_dir = str(services.settings.data_dir)
    env = {"DATABASE_URL": services.settings.database_url,
           "WORKESTRA_SECRET_KEY": services.settings.secret_key}
    args = ["dkim", "generate", "acme", "--selector", "s1", "--data-dir", env_dir]
    # the first as a real `workestra` process, on nothing but this environment
    proc = subprocess.run([sys.executable, "-m", "gateway", *args],
                          env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    runs = [published(proc.stdout)[1]]
    # again, and rotated: the same parser and command in this process, on the same environment
    for name in list(os.environ):
        if name.startswith("WORKESTRA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for extra in ([], ["--rotate"]):
        parsed = build_parser().parse_args([*args, *extra])
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert parsed.func(parsed) == 0
        runs.append(published(out.getvalue())[1])
    assert runs[0] == runs[1] != runs[2]
    assert main(["dkim", "generate", "nope", "--data-dir", env_dir]) == 1


def _generate(services, monkeypatch, *extra: str) -> tuple[str, str, str]:
    """`dkim generate acme EXTRA...` in this process: (record name, TXT value, all it printed)."""
    from gateway.cli import build_parser

    for name in list(os.environ):
        if name.startswith("WORKESTRA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("WORKESTRA_SECRET_KEY", services.settings.secret_key)
    parsed = build_parser().parse_args(["dkim", "generate", "acme", *extra, "--data-dir",
                                        str(services.settings.data_dir)])
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert parsed.func(parsed) == 0
    return (*published(out.getvalue()), out.getvalue())


def _stored(services) -> tuple[str | None, str | None]:
    ws = services.store.workspace_by_slug("acme")
    return ws.dkim_selector, ws.dkim_private_key


def test_another_selector_without_rotate_keeps_the_key_and_says_which_it_has(services,
                                                                             monkeypatch):
    first_name, first_txt, _ = _generate(services, monkeypatch)
    assert first_name == "s1._domainkey.acme.test"
    key = _stored(services)
    name, txt, said = _generate(services, monkeypatch, "--selector", "s2")
    assert (name, txt) == (first_name, first_txt) and _stored(services) == key
    assert "selector s1" in said and "--rotate" in said
    # and the default selector again changes nothing either, after a rotation to s2
    s2_name, s2_txt, _ = _generate(services, monkeypatch, "--selector", "s2", "--rotate")
    assert s2_name == "s2._domainkey.acme.test" and s2_txt != first_txt
    rotated = _stored(services)
    assert rotated[0] == "s2" and rotated[1] != key[1]
    name, txt, said = _generate(services, monkeypatch)
    assert (name, txt) == (s2_name, s2_txt) and _stored(services) == rotated
    assert "selector s2" in said


def test_rotate_without_a_selector_keeps_the_current_one(services, monkeypatch):
    _generate(services, monkeypatch, "--selector", "s7")
    key = _stored(services)
    name, _, _ = _generate(services, monkeypatch, "--rotate")
    assert name == "s7._domainkey.acme.test"
    assert _stored(services)[0] == "s7" and _stored(services)[1] != key[1]


def test_workspaces_without_a_key_are_signed_with_the_gateways(tmp_path, database_url):
    from gateway.demo import seed_demo
    from gateway.services import build_services

    pair = generate()
    settings = make_settings(tmp_path, database_url,
                             dkim=DkimKey("mail.gateway.test", "gw", pair.private_pem))
    svc = build_services(settings)
    try:
        seed_demo(svc.store)
        row = deliver(svc, customer_mail("Hello", "Is anyone there?"))
        conf = next(m for m in svc.store.outbox(ticket_id=row.ticket_id)
                    if m.kind == "customer/ticket_received")
        zone = zone_with("gw._domainkey.mail.gateway.test", pair.txt_value())
        assert dkim.verify(conf.raw, dnsfunc=zone)
        assert signature_tags(conf.raw)["d"] == "mail.gateway.test"
    finally:
        svc.close()


@pytest.mark.parametrize("env", [
    {"WORKESTRA_DKIM_DOMAIN": "x.test"},
    {"WORKESTRA_DKIM_DOMAIN": "x.test", "WORKESTRA_DKIM_SELECTOR": "s",
     "WORKESTRA_DKIM_KEY_FILE": "/nonexistent"},
])
def test_a_half_configured_gateway_key_is_a_clear_error(tmp_path, env):
    from gateway.config import SettingError, load_settings

    with pytest.raises(SettingError, match="WORKESTRA_DKIM"):
        load_settings(env, data_dir=str(tmp_path))
