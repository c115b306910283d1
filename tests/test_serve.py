"""`workestra serve` as an operator sees it: log lines, clean stops, restarts that lose nothing."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from gateway.inbound.spool import Spool
from gateway.services import build_services
from tests.conftest import customer_mail, make_settings, start_gateway, stop_gateway


def test_logs_each_socket_and_stops_cleanly_on_sigterm(gateway):
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(15) == 0
    log = gateway.logs()
    assert f"SMTP listening on 127.0.0.1:{gateway.smtp_port}" in log
    assert f"HTTP listening on http://127.0.0.1:{gateway.http_port}" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_busy_port_is_a_one_line_error(tmp_path, database_url):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "d"),
             "--smtp-port", str(port), "--http-port", "0"],
            capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"workestra: cannot listen for SMTP on 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr


def test_mail_spooled_before_a_crash_is_processed_on_start(tmp_path, database_url, sink):
    """A message made durable (and answered 250) but never processed gets its outcome later."""
    settings = make_settings(tmp_path, database_url)
    svc = build_services(settings)
    from gateway.demo import seed_demo

    seed_demo(svc.store)
    raw = customer_mail("Sent just before the crash", "Please do not lose me.").as_bytes()
    inbound_id = Spool(svc.store, svc.blobs).accept(raw, mail_from="jane@customer.test",
                                                    rcpt_tos=["support@acme.test"])
    assert svc.store.inbound(inbound_id).state == "received"
    svc.close()

    running = start_gateway(tmp_path, database_url, sink.port)
    try:
        conf = sink.wait_for(lambda m: "jane@customer.test" in str(m["To"]))
        assert "Sent just before the crash" in str(conf["Subject"])
        check = running.services()
        row = check.store.inbound(inbound_id)
        assert (row.state, row.outcome) == ("done", "new_ticket")
        check.close()
    finally:
        stop_gateway(running)


def test_several_processes_migrating_one_fresh_postgres_at_once(postgres_url):
    from concurrent.futures import ThreadPoolExecutor

    from storage.engine import make_engine
    from storage.migrate import upgrade

    engines = [make_engine(make_settings_url(postgres_url)) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(upgrade, engines))  # raises if any of them failed
    for engine in engines:
        engine.dispose()


def make_settings_url(url: str) -> str:
    from gateway.config import _database_url

    return _database_url(url, None)  # type: ignore[arg-type]
