"""DKIM key pairs: made once per workspace, published as a DNS TXT record, used to sign."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048  # RFC 8301: at least 1024, 2048 recommended


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_b64: str  # the DER SubjectPublicKeyInfo, base64, as the p= tag wants it

    def txt_value(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public_b64}"


def generate() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode("ascii")
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(private_pem, base64.b64encode(public_der).decode("ascii"))


def public_txt(private_pem: str) -> str:
    """The TXT value for an existing private key, to print it again."""
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"
