"""VERP: the envelope sender of each outbound mail names it, so a bounce finds its way back.

`support+b42-<mac>@acme.test` is mail 42's return path. The MAC keeps strangers from marking
our mail as bounced by writing to made-up addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_TAG = re.compile(r"^[^+@]+\+b(\d{1,12})-([0-9a-f]{16})@", re.IGNORECASE)


def _mac(secret: str, outbound_id: int) -> str:
    return hmac.new(secret.encode(), f"verp:{outbound_id}".encode(),
                    hashlib.sha256).hexdigest()[:16]


def return_path(secret: str, sender: str, outbound_id: int) -> str:
    local, _, domain = sender.partition("@")
    return f"{local.split('+', 1)[0]}+b{outbound_id}-{_mac(secret, outbound_id)}@{domain}"


def read_return_path(secret: str, address: str) -> int | None:
    """The outbound id a bounce address names, or None if it is not one of ours."""
    m = _TAG.match(address.strip().strip("<>"))
    if m is None:
        return None
    outbound_id = int(m.group(1))
    return outbound_id if hmac.compare_digest(m.group(2).lower(),
                                              _mac(secret, outbound_id)) else None
