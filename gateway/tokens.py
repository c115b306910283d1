"""Signed tokens: the customer's tracking link and the ticket tag in our reply address."""

from __future__ import annotations

import hashlib
import hmac
import re

from itsdangerous import BadSignature, URLSafeTimedSerializer

TRACKING_MAX_AGE = 30 * 24 * 3600
_TRACKING_SALT = "workestra.tracking.v1"
_REPLY_TAG = re.compile(r"^t(\d+)-([0-9a-f]{20})$")


def tracking_token(secret: str, ticket_id: int, email: str) -> str:
    """A link token bound to one ticket and its customer's address (30 days)."""
    s = URLSafeTimedSerializer(secret, salt=_TRACKING_SALT)
    return s.dumps([ticket_id, email.lower()])


def read_tracking_token(secret: str, token: str, *, max_age: int = TRACKING_MAX_AGE
                        ) -> tuple[int, str] | None:
    """(ticket id, email) from a valid token; None when forged, malformed or expired."""
    s = URLSafeTimedSerializer(secret, salt=_TRACKING_SALT)
    try:
        value = s.loads(token, max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        return None
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], int)
            or not isinstance(value[1], str)):
        return None
    return value[0], value[1]


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
