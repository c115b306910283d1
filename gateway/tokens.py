"""Signed tokens: the customer's tracking link, the CSAT feedback link and the reply-address tag."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from functools import lru_cache

from itsdangerous import BadSignature, URLSafeTimedSerializer

TRACKING_MAX_AGE = 30 * 24 * 3600
_TRACKING_SALT = "workestra.tracking.v1"
FEEDBACK_MAX_AGE = 7 * 24 * 3600
_FEEDBACK_SALT = "workestra.feedback.v1"  # not the tracking salt: neither token opens the other
_REPLY_TAG = re.compile(r"^t(\d+)-([0-9a-f]{20})$")


@lru_cache(maxsize=16)
def _serializer(secret: str, salt: str) -> URLSafeTimedSerializer:
    """Built once per key and purpose: building one tests its serializer by dumping a value."""
    return URLSafeTimedSerializer(secret, salt=salt)


def _dump(salt: str, secret: str, ticket_id: int, email: str) -> str:
    return _serializer(secret, salt).dumps([ticket_id, email.lower()])


def _load(salt: str, secret: str, token: str, max_age: int, now: float | None
          ) -> tuple[int, str] | None:
    """(ticket id, email) when the signature and age check out; `now` lets tests move the clock."""
    s = _serializer(secret, salt)
    try:
        value, signed_at = s.loads(token, return_timestamp=True)
    except (BadSignature, ValueError, TypeError):
        return None
    age = (time.time() if now is None else now) - signed_at.timestamp()
    if age > max_age or age < -60:  # a token from the future is forged or the clock is wrong
        return None
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], int)
            or isinstance(value[0], bool) or not isinstance(value[1], str)):
        return None
    return value[0], value[1]


def tracking_token(secret: str, ticket_id: int, email: str) -> str:
    """A link token bound to one ticket and its customer's address (30 days)."""
    return _dump(_TRACKING_SALT, secret, ticket_id, email)


def read_tracking_token(secret: str, token: str, *, max_age: int = TRACKING_MAX_AGE,
                        now: float | None = None) -> tuple[int, str] | None:
    """(ticket id, email) from a valid token; None when forged, malformed or expired."""
    return _load(_TRACKING_SALT, secret, token, max_age, now)


def feedback_token(secret: str, ticket_id: int, email: str) -> str:
    """The "Rate Your Experience" link token for one resolved ticket and its customer (7 days)."""
    return _dump(_FEEDBACK_SALT, secret, ticket_id, email)


def read_feedback_token(secret: str, token: str, *, max_age: int = FEEDBACK_MAX_AGE,
                        now: float | None = None) -> tuple[int, str] | None:
    """(ticket id, email) from a valid feedback token; None when forged, expired or a tracking
    token (which must not let anyone rate a ticket, nor a feedback token open one)."""
    return _load(_FEEDBACK_SALT, secret, token, max_age, now)


def _reply_mac(secret: str, ticket_id: int) -> str:
    key = hashlib.sha256(("reply-address:" + secret).encode()).digest()
    return hmac.new(key, str(ticket_id).encode(), hashlib.sha256).hexdigest()[:20]


def reply_tag(secret: str, ticket_id: int) -> str:
    """The `+tag` of a ticket's reply address. Lower-case hex: MTAs may fold the local part."""
    return f"t{ticket_id}-{_reply_mac(secret, ticket_id)}"


def reply_address(secret: str, support_address: str, ticket_id: int) -> str:
    local, _, domain = support_address.partition("@")
    return f"{local}+{reply_tag(secret, ticket_id)}@{domain}"


def read_reply_tag(secret: str, address: str) -> int | None:
    """The ticket id signed into an address like support+t42-<mac>@domain, if it verifies."""
    local = address.strip().strip("<>").lower().rpartition("@")[0]
    if "+" not in local:
        return None
    m = _REPLY_TAG.match(local.split("+", 1)[1])
    if not m:
        return None
    ticket_id = int(m.group(1))
    return ticket_id if hmac.compare_digest(m.group(2), _reply_mac(secret, ticket_id)) else None


def loop_marker(secret: str) -> str:
    """Our X-Loop value: the same for every mail of this installation, unlike anyone else's, so
    another helpdesk's mail (even another Workestra's) is not mistaken for our own."""
    key = hashlib.sha256(("x-loop:" + secret).encode()).hexdigest()[:16]
    return f"workestra-{key}"
