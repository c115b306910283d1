"""Signs outgoing mail with the workspace's DKIM key (fallback: the gateway's) before it is queued.

Signing at queue time means the stored bytes are exactly what is delivered, so a retry sends the
same signed message and a test can verify what the outbox holds.
"""

from __future__ import annotations

import dkim

# The headers a receiver shows or threads on; signing them stops a relay from rewriting them.
SIGNED_HEADERS = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to",
                  b"in-reply-to", b"references", b"mime-version", b"content-type",
                  b"auto-submitted")


def sign(raw: bytes, *, selector: str, domain: str, private_pem: str) -> bytes:
    """The message with a DKIM-Signature header on top (relaxed/relaxed, rsa-sha256)."""
    present = {name.lower() for name, _ in dkim.rfc822_parse(raw)[0]}
    headers = [h for h in SIGNED_HEADERS if h in present or h == b"from"]
    signature = dkim.sign(raw, selector.encode("ascii"), domain.encode("ascii"),
                          private_pem.encode("ascii"), canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=headers)
    return signature + raw
