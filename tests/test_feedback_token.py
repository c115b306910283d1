"""The "Rate Your Experience" link: one ticket, one customer, seven days, and no other token."""

import time

from gateway.tokens import (
    FEEDBACK_MAX_AGE,
    feedback_token,
    read_feedback_token,
    read_tracking_token,
    tracking_token,
)

SECRET = "a-secret-key-for-tests-only"
DAY = 24 * 3600


def test_feedback_token_round_trips_ticket_and_address():
    token = feedback_token(SECRET, 42, "Jane@Customer.test")
    assert read_feedback_token(SECRET, token) == (42, "jane@customer.test")


def test_feedback_token_works_for_seven_days_and_not_after():
    issued = time.time()
    token = feedback_token(SECRET, 42, "jane@customer.test")
    assert FEEDBACK_MAX_AGE == 7 * DAY
    assert read_feedback_token(SECRET, token, now=issued + 7 * DAY - 60) == (42,
                                                                          "jane@customer.test")
    assert read_feedback_token(SECRET, token, now=issued + 7 * DAY + 5) is None
    assert read_feedback_token(SECRET, token, now=issued + 30 * DAY) is None


def test_tracking_and_feedback_tokens_cannot_stand_for_each_other():
    tracking = tracking_token(SECRET, 42, "jane@customer.test")
    feedback = feedback_token(SECRET, 42, "jane@customer.test")
    assert read_feedback_token(SECRET, tracking) is None
    assert read_tracking_token(SECRET, feedback) is None
    assert read_tracking_token(SECRET, tracking) == (42, "jane@customer.test")


def test_tampered_or_foreign_feedback_token_is_refused():
    token = feedback_token(SECRET, 42, "jane@customer.test")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert read_feedback_token(SECRET, flipped) is None
    assert read_feedback_token("another-secret-key-entirely", token) is None
    rest = token.partition(".")[2]
    other = feedback_token(SECRET, 43, "jane@customer.test")
    assert read_feedback_token(SECRET, other.partition(".")[0] + "." + rest) is None
    assert read_feedback_token(SECRET, "forged") is None
    assert read_feedback_token(SECRET, "") is None
