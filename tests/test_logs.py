"""Structured logs: each line names the request, message or mail it belongs to."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import httpx
import pytest

from gateway import logs
from gateway.tokens import tracking_token
from tests.conftest import customer_mail, start_gateway, stop_gateway


def _capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    handler.addFilter(logs._WithIds())
    logger = logging.getLogger(f"workestra.test.{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_ids_bound_in_a_block_reach_lines_logged_in_threads_and_leave_with_the_block():
    logger, out = _capture("json")

    async def work() -> None:
        with logs.bound(request_id="r-1", inbound=7):
            await asyncio.to_thread(logger.info, "inside %s", "a thread")
        logger.info("after")

    asyncio.run(work())
    inside, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert (inside["msg"], inside["request_id"], inside["inbound"]) == ("inside a thread",
                                                                        "r-1", 7)
    assert "request_id" not in after and after["level"] == "info"


def test_text_lines_carry_the_ids_as_pairs_before_any_traceback():
    logger, out = _capture("text")
    with logs.bound(outbound=12, message_id="a b@x"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("send failed")
    first, *rest = out.getvalue().splitlines()
    assert first.endswith('send failed [outbound=12 message_id="a b@x"]')
    assert any("RuntimeError: boom" in line for line in rest)


def test_text_lines_without_ids_read_as_loggings_own_format():
    ours = logs.TextFormatter()
    stdlib = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stdlib.formatTime = ours.formatTime  # type: ignore[method-assign]
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        failure = sys.exc_info()
    for record in (
        logging.LogRecord("workestra.x", logging.INFO, __file__, 1, "a %s line", ("plain",), None),
        logging.LogRecord("workestra.x", logging.WARNING, __file__, 1, "two\nlines", (), None),
        logging.LogRecord("workestra.x", logging.ERROR, __file__, 1, "failed", (), failure,
                          sinfo="Stack (most recent call last):\n  here"),
    ):
        want = stdlib.format(record)
        record.exc_text = None
        assert ours.format(record) == want


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_running_gateway_logs_json_with_request_message_and_mail_ids(tmp_path, database_url,
                                                                       sink):
    running = start_gateway(tmp_path, database_url, sink.port, {"WORKESTRA_LOG_FORMAT": "json"})
    try:
        mail = customer_mail("Printer on fire", "Room 4.")
        running.send(mail, "jane@customer.test", ["support@acme.test"])
        sink.wait_for(lambda m: "Printer on fire" in str(m["Subject"]))
        r = httpx.get(f"{running.base_url}/healthz", headers={"X-Request-ID": "lb-4f2a9c1e"})
        assert r.headers["x-request-id"] == "lb-4f2a9c1e"
        # A valid header value that is no request id (spaces, a quote): never echoed into our
        # logs; a new one is made. (A control character never gets this far: the HTTP
        # parser answers 400 itself.)
        fresh = httpx.get(f"{running.base_url}/healthz",
                          headers={"X-Request-ID": 'bad id" injected=1'})
        assert len(fresh.headers["x-request-id"]) == 16  # not echoed: a new one
        assert fresh.headers["x-request-id"] != 'bad id" injected=1'
        control = httpx.get(f"{running.base_url}/healthz", headers={"X-Request-ID": "id\x7f"})
        assert control.status_code == 400
        svc = running.services()
        ticket = svc.store.tickets(1)[0]
        svc.close()
        token = tracking_token("test-secret-key-0123456789", ticket.id, "jane@customer.test")
        httpx.get(f"{running.base_url}/portal/acme/tickets/{ticket.reference}?t={token}")
        time.sleep(0.5)
    finally:
        stop_gateway(running)
    text = running.logs()
    lines = _json_lines(text)  # every line is JSON, uvicorn's own included
    assert token not in text  # tokens never reach the log
    mid = mail["Message-ID"].strip("<>")
    spooled = next(x for x in lines if "spooled" in x["msg"])
    outcome = next(x for x in lines if x.get("outcome") == "new_ticket")
    assert outcome["inbound"] == spooled["inbound"] and outcome["message_id"] == mid
    assert outcome["ticket"] == ticket.id
    sent = [x for x in lines if x["logger"] == "workestra.outbox" and "sent" in x["msg"]]
    assert sent and all(x["ticket"] == ticket.id and x["outbound"] for x in sent)
    health = next(x for x in lines if x.get("request_id") == "lb-4f2a9c1e")
    assert (health["route"], health["status"], health["method"]) == ("/healthz", 200, "GET")
    swap = next(x for x in lines if x.get("route", "").startswith("/portal/{slug}/tickets"))
    assert swap["status"] == 303 and "TKT" not in swap["msg"]
