"""Checks every DKIM signature on a received mail (dkimpy) and says which domains vouch for it.

The DNS lookup is a parameter: production asks the resolver (with a timeout), tests hand in
the records they published. A key that cannot be fetched is not a forgery: it is recorded as
`temperror`/`permerror`, and only a signature that verifies against its key (`pass`) or does
not (`fail`) counts as evidence either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

DnsTxt = Callable[..., bytes | str | None]  # dnsfunc(name: bytes, timeout=...) as dkimpy calls it
_QUIET = logging.getLogger("workestra.dkim.lib")  # dkimpy's chatter, not ours
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True)
class Signature:
    domain: str
    result: str  # pass | fail | temperror | permerror
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.result}:{self.domain}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class DkimResult:
    signatures: list[Signature] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """What is stored with the message, e.g. "pass:acme.test fail:evil.test (body hash)"."""
        return "; ".join(map(str, self.signatures)) or "none"

    def passing_domains(self) -> set[str]:
        return {s.domain for s in self.signatures if s.result == "pass"}

    def aligned(self, from_domain: str) -> list[Signature]:
        """Signatures by the From domain or a parent of it (relaxed alignment, as DMARC)."""
        from_domain = from_domain.lower()
        return [s for s in self.signatures
                if from_domain == s.domain or from_domain.endswith("." + s.domain)]


def _domain_of(header_value: bytes) -> str:
    try:
        tags = parse_tag_value(header_value)
    except InvalidTagValueList:
        return ""
    return tags.get(b"d", b"").decode("ascii", "replace").strip().lower()


class _Lookup:
    """Wraps the DNS lookup to remember whether the last key was found at all."""

    def __init__(self, dns_txt: DnsTxt) -> None:
        self.dns_txt = dns_txt
        self.found = True

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        value = self.dns_txt(name, timeout=timeout)
        self.found = bool(value)
        return value.encode() if isinstance(value, str) else value


def _signed(raw: bytes) -> bool:
    """Whether the header block has a DKIM-Signature field at all."""
    end = raw.find(b"\n\n")
    crlf = raw.find(b"\r\n\r\n")
    end = min(e for e in (end, crlf, len(raw)) if e >= 0)
    return b"dkim-signature:" in raw[:end].lower()


def verify(raw: bytes, dns_txt: DnsTxt | None = None, timeout: float = 5.0) -> DkimResult:
    """Every DKIM-Signature header, verified on its own; never raises."""
    result = DkimResult()
    if not _signed(raw):
        return result  # nothing to check, and dkimpy's copies of a big body are not free
    try:
        checker = dkim.DKIM(raw, logger=_QUIET, timeout=int(timeout))
    except Exception as e:  # unparseable headers: nothing can be verified
        _QUIET.debug("dkim: cannot read message: %s", e)
        return result
    lookup = _Lookup(dns_txt or dkim.dnsplug.get_txt)
    headers = [v for k, v in checker.headers if k.lower() == b"dkim-signature"]
    for idx, value in enumerate(headers):
        domain = _domain_of(value)
        try:
            lookup.found = True
            ok = checker.verify(idx=idx, dnsfunc=lookup)
            if ok:
                sig = Signature(domain, "pass")
            elif not lookup.found:  # an unpublished key is no evidence of forgery
                sig = Signature(domain, "permerror", "no key published")
            else:
                sig = Signature(domain, "fail", "bad signature")
        except (dkim.DnsTimeoutError, OSError) as e:
            sig = Signature(domain, "temperror", f"DNS: {type(e).__name__}")
        except dkim.KeyFormatError as e:
            sig = Signature(domain, "permerror", str(e)[:120])
        except dkim.ValidationError as e:
            # a body hash mismatch is the usual sign of tampering in transit
            text = str(e)
            sig = Signature(domain, "fail", "body hash mismatch"
                            if "body hash mismatch" in text else text[:120])
        except Exception as e:  # a malformed signature is no evidence either way
            sig = Signature(domain, "permerror", f"{type(e).__name__}: {e}"[:120])
        result.signatures.append(sig)
    return result
