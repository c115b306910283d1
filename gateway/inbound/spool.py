"""Makes a received message durable and recorded, the step before anything is acknowledged."""

from __future__ import annotations

from collections.abc import Sequence

from storage.blobs import BlobStore
from storage.store import Store


class Spool:
    """Raw bytes to the blob store (fsynced), then a row in `inboundmessage` (committed)."""

    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs

    def accept(self, raw: bytes, *, mail_from: str, rcpt_tos: Sequence[str],
               channel: str = "smtp") -> int:
        """Returns the inbound id; only after this may the sender be told `250`."""
        digest = self.blobs.put(raw)
        return self.store.record_inbound(raw_sha256=digest, size=len(raw), mail_from=mail_from,
                                         rcpt_tos=list(rcpt_tos), channel=channel)
