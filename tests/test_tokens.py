"""Tracking links and reply addresses: only a valid, unexpired, matching signature opens one."""

import time

from gateway.tokens import (
    read_reply_tag,
    read_tracking_token,
    reply_address,
    tracking_token,
)

SECRET = "a-secret-key-for-tests-only"


def test_tracking_token_round_trips_ticket_and_address():
    token = tracking_token(SECRET, 42, "Jane@Customer.test")
    assert read_tracking_token(SECRET, token) == (42, "jane@customer.test")


def test_tracking_token_rejects_tampering_and_other_keys():
    token = tracking_token(SECRET, 42, "jane@customer.test")
    assert read_tracking_token("another-secret-key-entirely", token) is None
    assert read_tracking_token(SECRET, token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
                               ) is None
    assert read_tracking_token(SECRET, "forged") is None
    assert read_tracking_token(SECRET, "") is None


def test_tracking_token_expires():
    token = tracking_token(SECRET, 42, "jane@customer.test")
    time.sleep(1.1)
    assert read_tracking_token(SECRET, token, max_age=0) is None


def test_reply_address_survives_case_folding_and_rejects_forgery():
    address = reply_address(SECRET, "support@acme.test", 7)
    assert address.startswith("support+t7-") and address.endswith("@acme.test")
    assert read_reply_tag(SECRET, address) == 7
    assert read_reply_tag(SECRET, address.upper()) == 7  # some MTAs fold local parts
    assert read_reply_tag(SECRET, address.replace("+t7-", "+t8-")) is None
    assert read_reply_tag("another-secret-key-entirely", address) is None
    assert read_reply_tag(SECRET, "support@acme.test") is None
