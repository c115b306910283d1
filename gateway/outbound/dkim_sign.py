"""Signs outgoing mail with the workspace's DKIM key (fallback: the gateway's) before it is queued.

Signing at queue time means the stored bytes are exactly what is delivered, so a retry sends the
same signed message and a test can verify what the outbox holds. dkimpy does the RFC 6376 work
(parsing, relaxed canonicalisation, which headers are hashed and how); only the RSA operation is
OpenSSL's, through `cryptography`: dkimpy's pure-Python RSA costs about 7 ms a mail, OpenSSL's
well under one (bench/outbound.py). Tests verify every signature with dkimpy itself.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from functools import lru_cache

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy

# The headers a receiver shows or threads on; signing them stops a relay from rewriting them.
SIGNED_HEADERS = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to",
                  b"in-reply-to", b"references", b"mime-version", b"content-type",
                  b"auto-submitted")
_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


@lru_cache(maxsize=64)
def _key(private_pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("DKIM keys here are RSA keys")
    return key


def sign(raw: bytes, *, selector: str, domain: str, private_pem: str) -> bytes:
    """The message with a DKIM-Signature header on top (relaxed/relaxed, rsa-sha256)."""
    headers, body = dkim.rfc822_parse(raw)
    return signature_field(headers, body, selector=selector, domain=domain,
                           private_pem=private_pem) + raw


def signature_field(headers: Sequence[Sequence[bytes]], body: bytes, *, selector: str,
                    domain: str, private_pem: str) -> bytes:
    """The DKIM-Signature field (CRLF-terminated) for a message already split into header
    fields (name, value as sent) and a CRLF body: what `compose` writes, unparsed again."""
    present = {name.lower() for name, _ in headers}
    include = [h for h in SIGNED_HEADERS if h in present or h == b"from"]
    body_hash = base64.b64encode(hashlib.sha256(_RELAXED.canonicalize_body(body)).digest())
    # Folded at tag boundaries only, and hashed exactly as sent (b= empty, RFC 6376 3.7).
    head = (b"v=1; a=rsa-sha256; c=relaxed/relaxed; d=" + domain.encode("ascii")
            + b"; s=" + selector.encode("ascii") + b"; t=" + str(int(time.time())).encode()
            + b";\r\n h=" + b":".join(include) + b";\r\n bh=" + body_hash + b";\r\n b=")
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, _RELAXED, _RELAXED.canonicalize_headers(headers), include,
                      (b"DKIM-Signature", b" " + head), {})
    signature = base64.b64encode(_key(private_pem).sign(
        hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256())))
    folded = b"\r\n ".join(signature[i:i + 72] for i in range(0, len(signature), 72))
    return b"DKIM-Signature: " + head + folded + b"\r\n"
