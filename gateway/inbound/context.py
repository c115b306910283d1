"""What every pipeline step may use: the store, the settings, the intake and the transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from gateway.config import Settings
from gateway.inbound.dkim_verify import DnsTxt
from gateway.intake import Intake
from storage.store import Store


@dataclass
class Context:
    store: Store | None             # None when `inspect` runs without a database
    settings: Settings
    intake: Intake | None = None    # None for a dry run: nothing is stored
    s: Session | None = None        # the one transaction the whole message is handled in
    dns_txt: DnsTxt | None = None   # DKIM key lookups; None asks the system resolver
