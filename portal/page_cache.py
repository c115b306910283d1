"""Tracking pages kept as rendered, for as long as what they show is unchanged.

A customer's page is read far more often than its ticket changes. A kept page is served after
one small query, the page's fingerprint: the ticket's row, its contact's name and address, the
workspace's branding, and the count and last id of the ticket's public comments and of its
files; on SQLite, while nothing was committed since it was last read, not even that
(`Unchanged`). Comments and files are only ever added, and a held reply that an agent accepts turns
public (the count moves), so any change the page could show changes the fingerprint. What
differs per visitor, the CSRF token, is kept out of the stored page and put in on the way out.
A page is only ever stored, and served, after the visitor's signed ticket cookie matched the
ticket and its customer: a fingerprint names one ticket, never a visitor. A page is stored
under a fingerprint read before it was rendered only if the same fingerprint is read again
after, so a change made meanwhile is never stored under the older fingerprint.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Dialect, bindparam, false, func, select
from sqlalchemy.engine.interfaces import DBAPIConnection

from storage.models import Attachment, Comment, Contact, Ticket, Workspace

_T, _C, _W = Ticket.__table__, Contact.__table__, Workspace.__table__  # type: ignore[attr-defined]
_CM, _A = Comment.__table__, Attachment.__table__  # type: ignore[attr-defined]
# What of the workspace a page shows (not its counters, which move with every new ticket).
BRAND_COLUMNS = ("id", "slug", "name", "brand_name", "primary_color", "logo_url",
                 "support_email")
_public = (_CM.c.ticket_id == _T.c.id) & (_CM.c.internal == false())
_files = _A.c.ticket_id == _T.c.id
_FINGERPRINT = (
    select(*_T.c, _C.c.email, _C.c.name, *(_W.c[name] for name in BRAND_COLUMNS),
           select(func.count()).where(_public).scalar_subquery(),
           select(func.max(_CM.c.id)).where(_public).scalar_subquery(),
           select(func.count()).where(_files).scalar_subquery(),
           select(func.max(_A.c.id)).where(_files).scalar_subquery())
    .join_from(_T, _C, _C.c.id == _T.c.contact_id)
    .join(_W, _W.c.id == _T.c.workspace_id)
    .where(_T.c.id == bindparam("ticket_id"), _W.c.slug == bindparam("slug")))
_TICKET_COLUMNS = len(_T.c)  # the contact's address comes right after the ticket's columns
_NUMBER = _T.c.keys().index("number")


@dataclass(frozen=True)
class Fingerprint:
    key: tuple  # everything the page shows, as read
    number: int  # the ticket's number, to check against the reference in the address
    email: str  # its customer's address, to check against the visitor's cookie


@lru_cache(maxsize=4)
def _sql(dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
    """The fingerprint query as the driver takes it: read through SQLAlchemy's result
    machinery it cost more than the rest of a kept page's request (bench/portal.py)."""
    compiled = _FINGERPRINT.compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup) if compiled.positional else None


def read(conn: DBAPIConnection, dialect: Dialect, ticket_id: int, slug: str
         ) -> Fingerprint | None:
    """The ticket's fingerprint in the workspace of `slug`, or None if it is not there, read
    on the driver's own connection `conn` of `dialect`. Values are the driver's own, so
    fingerprints compare only with each other."""
    sql, order = _sql(dialect)
    params = {"ticket_id": ticket_id, "slug": slug}
    cursor = conn.cursor()
    try:
        cursor.execute(sql, tuple(params[k] for k in order) if order is not None else params)
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        return None
    # The values themselves are the key: a dictionary compares them in full, so no digest
    # need be made (a sha256 of their repr cost 35k of a kept page's 723k instructions).
    values = tuple(row)
    return Fingerprint(values, values[_NUMBER], values[_TICKET_COLUMNS])


class Unchanged:
    """Fingerprints read on one SQLite connection, reused while the database is unchanged.

    SQLite's `data_version` moves whenever another connection commits (and the quick-read
    connection never writes), so while it stands still every fingerprint read since is still
    the database's: a page viewed again and again costs a pragma (5 us), not the fingerprint's
    query (22 us, a sixth of a kept page). Used from the event loop only."""

    def __init__(self, most: int = 1_000) -> None:
        # Fingerprints held at the most (each up to ~10 KB: a ticket's description and
        # resolution are in it); past that, or on any commit, the memo starts again.
        self.most = most
        self._conn: DBAPIConnection | None = None
        self._version: object = None
        self._known: dict[tuple[int, str], Fingerprint | None] = {}

    def read(self, conn: DBAPIConnection, dialect: Dialect, ticket_id: int, slug: str
             ) -> Fingerprint | None:
        """`read(...)`, from memory when nothing was committed since it was last read on
        `conn`. Versions of two connections do not compare: another connection starts over."""
        cursor = conn.cursor()
        try:
            version = cursor.execute("PRAGMA data_version").fetchone()[0]
        finally:
            cursor.close()
        if conn is not self._conn or version != self._version:
            self._conn, self._version = conn, version
            self._known.clear()
        key = (ticket_id, slug)
        if key not in self._known:
            if len(self._known) >= self.most:
                self._known.clear()
            self._known[key] = read(conn, dialect, ticket_id, slug)
        return self._known[key]


class PageCache:
    """Rendered pages by (fingerprint, what else the page depends on), at most `max_bytes` of
    them; the least recently used go first. Used from the event loop only."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.marker = secrets.token_hex(32)  # stands in for the CSRF token in stored pages
        self.fingerprints = Unchanged()  # read on the store's quick-read connection
        self._pages: OrderedDict[tuple, tuple[bytes, list[tuple[bytes, bytes]]]] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def put(self, key: tuple, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= _weight(key, old[0])
        self._pages[key] = (body, headers)
        self._bytes += _weight(key, body)
        while self._bytes > self.max_bytes and self._pages:
            evicted_key, (evicted, _) = self._pages.popitem(last=False)
            self._bytes -= _weight(evicted_key, evicted)


def _weight(key: tuple, body: bytes) -> int:
    """What a kept page counts against the cache's size: its body and the text in its key
    (a ticket's description and resolution are part of its fingerprint)."""
    text = sum(len(v) for part in key for v in (part if isinstance(part, tuple) else (part,))
               if isinstance(v, str | bytes))
    return len(body) + text
