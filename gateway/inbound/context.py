"""What every pipeline step may use: the store, the settings, the intake and the transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    _memo: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def once(self, key: tuple, load: Callable[[], Any]) -> Any:
        """A lookup made once per batch transaction: settings no step of the batch changes."""
        if key not in self._memo:
            self._memo[key] = load()
        return self._memo[key]

    def support_addresses(self, workspace_id: int | None = None) -> list[str]:
        """Our own addresses (all, or one workspace's); [] without a store."""
        if self.store is None:
            return []
        store, s = self.store, self.s
        return self.once(("addresses", workspace_id),
                         lambda: store.support_addresses(s, workspace_id))

    def agent_emails(self, workspace_id: int) -> set[str]:
        """The workspace's agents' addresses, lower-cased."""
        if self.store is None or self.s is None:
            return set()
        return self.store.team(self.s, workspace_id).emails  # read once per transaction
