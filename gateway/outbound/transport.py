"""Hands a rendered mail to the relay, or writes it to DATA_DIR/sent/ when there is none."""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from pathlib import Path
from typing import Protocol

import aiosmtplib

from gateway.config import Relay


class DeliveryError(Exception):
    """A failed attempt; `permanent` when retrying cannot help (a 5xx answer)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    async def send(self, raw: bytes, sender: str, recipients: list[str], name: str) -> str:
        """Hands the mail over; returns what the other side said, for the attempt record."""
        ...


class SmtpRelay:
    """Delivers through WORKESTRA_SMTP_RELAY; 4xx and connection errors are temporary."""

    def __init__(self, relay: Relay, timeout: float = 30.0) -> None:
        self.relay = relay
        self.timeout = timeout

    def _tls(self) -> dict:
        r = self.relay
        options: dict = {"start_tls": r.security == "starttls", "use_tls": r.security == "tls"}
        if r.security != "none" and r.ca_file:
            options["tls_context"] = ssl.create_default_context(cafile=r.ca_file)
        if r.username:
            options.update(username=r.username, password=r.password or "")
        return options

    async def send(self, raw: bytes, sender: str, recipients: list[str], name: str) -> str:
        try:
            errors, answer = await aiosmtplib.send(
                raw, sender=sender, recipients=recipients, hostname=self.relay.host,
                port=self.relay.port, timeout=self.timeout, **self._tls())
        except aiosmtplib.SMTPAuthenticationError as e:
            # Our credentials, not the mail: keep it queued until someone fixes the setting.
            raise DeliveryError(f"relay refused our login: {e.code} {e.message}",
                                permanent=False) from e
        except aiosmtplib.SMTPResponseException as e:
            raise DeliveryError(f"{e.code} {e.message}", permanent=500 <= e.code < 600) from e
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"{type(e).__name__}: {e}", permanent=False) from e
        if errors:  # some recipients refused (aiosmtplib raises only when all are)
            code, message = next(iter(errors.values()))
            raise DeliveryError(f"{code} {message}", permanent=500 <= code < 600)
        return answer


class SentDirectory:
    """The embedded default: each mail becomes DATA_DIR/sent/<name>.eml for a newcomer to read."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    async def send(self, raw: bytes, sender: str, recipients: list[str], name: str) -> str:
        await asyncio.to_thread(self._write, raw, name)
        return f"written to {self.root / name}.eml"

    def _write(self, raw: bytes, name: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / f"{name}.eml")
