"""Removes blob files that no row refers to, once no one can still come to refer to them.

A blob is written before the row that refers to it commits, so an orphan is normal for a
while: a file kept for a form that came back with an error (its upload token lives 24 hours,
portal/uploads.py), or a write whose transaction then failed or crashed. Only a file that no
`Attachment.sha256` nor `InboundMessage.raw_sha256` names *and* that nothing wrote or touched
for `older_than` (48 hours by default, twice a token's life) is removed.

A writer may want old content again at any moment: `BlobStore.put` of bytes that exist
already touches the file (its mtime) instead of writing it. So each candidate is first renamed
to a trash name in its folder, which no put can find (a put after the rename writes the file
anew), and its mtime is read again: recent means a put touched it just before, and it goes
back; old means no put can have relied on it, and it is unlinked. References are read after
the files are listed, a chunk of digests at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import col, select

from storage.blobs import BlobStore
from storage.models import Attachment, InboundMessage
from storage.store import Store

OLDER_THAN = timedelta(hours=48)  # twice an upload token's life (UPLOAD_MAX_AGE)
CHUNK = 500  # digests per reference query
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LEVEL = re.compile(r"[0-9a-f]{2}")
_TRASH = ".sweep-"  # .sweep-<8 random hex>-<digest>: two sweeps never share a trash name
_TEMP = ".tmp-"  # BlobStore.put's file being written


class WrongDatabase(RuntimeError):
    """The database refers to no file at all while old files are there: most likely not the
    database these files belong to (a mistyped DATABASE_URL), so nothing is removed."""


@dataclass
class SweepResult:
    """What a sweep did (or, with dry_run, would do)."""

    removed: int = 0  # unreferenced blobs deleted
    bytes_freed: int = 0  # by them and by the leftovers
    referenced: int = 0  # old, but a row refers to them: kept
    recent: int = 0  # written or touched within older_than: kept
    restored: int = 0  # touched by a put while being swept (or taken by another sweep): kept
    leftovers: int = 0  # old temporary files of an interrupted put, deleted
    dry_run: bool = False

    def summary(self) -> str:
        """One line for a person: 'removed 3 unreferenced files (1.2 MB); kept 120 ...'."""
        verb = "would remove" if self.dry_run else "removed"
        line = (f"{verb} {_count(self.removed, 'unreferenced file')} "
                f"({_size(self.bytes_freed)}); kept {self.referenced} referenced, "
                f"{self.recent + self.restored} recent")
        if self.leftovers:
            line += f"; {verb} {_count(self.leftovers, 'leftover temporary file')}"
        return f"dry run: {line}" if self.dry_run else line


def sweep(store: Store, blobs: BlobStore, *, older_than: timedelta = OLDER_THAN,
          now: datetime | None = None, dry_run: bool = False) -> SweepResult:
    """Deletes the blobs no row refers to that are older than `older_than`; see the module."""
    cutoff = ((now or datetime.now(UTC)) - older_than).timestamp()
    result = SweepResult(dry_run=dry_run)
    candidates: list[tuple[Path, int]] = []
    guarded = False
    for path, st in _files(blobs.root):
        name = path.name
        if name.startswith(_TRASH):
            if not dry_run:
                _put_back(path)
        elif name.startswith(_TEMP):
            if st.st_mtime < cutoff:  # a put that never finished: none takes this long
                result.leftovers += 1
                result.bytes_freed += st.st_size
                if not dry_run:
                    path.unlink(missing_ok=True)
        elif not _DIGEST.fullmatch(name):
            continue  # not ours: left alone
        elif st.st_mtime >= cutoff:
            result.recent += 1
        else:
            if not guarded:  # once, before anything could be removed
                _refuse_unrelated(store)
                guarded = True
            candidates.append((path, st.st_size))
            if len(candidates) >= CHUNK:
                _sweep_chunk(store, candidates, cutoff, result)
                candidates = []
    _sweep_chunk(store, candidates, cutoff, result)
    return result


def remove_if_old(path: Path, cutoff: float) -> int | None:
    """The step for one old, unreferenced blob: the bytes freed, or None if it stays.

    Renamed first, so that a put from then on writes the file anew; a put that came just
    before the rename left a recent mtime, and the file goes back under its name (same
    content, so replacing a copy a put wrote meanwhile loses nothing)."""
    trash = path.with_name(f"{_TRASH}{os.urandom(4).hex()}-{path.name}")
    try:
        os.rename(path, trash)
        st = trash.stat()
        if st.st_mtime >= cutoff:
            os.replace(trash, path)
            return None
        trash.unlink()
    except FileNotFoundError:  # another sweep took it meanwhile
        return None
    return st.st_size


def _sweep_chunk(store: Store, candidates: list[tuple[Path, int]], cutoff: float,
                 result: SweepResult) -> None:
    """Reads which candidates rows refer to (after they were listed), removes the others."""
    if not candidates:
        return
    digests = [path.name for path, _ in candidates]
    with store.read() as s:
        referenced = set(s.exec(select(Attachment.sha256)
                                .where(col(Attachment.sha256).in_(digests))))
        referenced.update(s.exec(select(InboundMessage.raw_sha256)
                                 .where(col(InboundMessage.raw_sha256).in_(digests))))
    for path, size in candidates:
        if path.name in referenced:
            result.referenced += 1
            continue
        freed = size if result.dry_run else remove_if_old(path, cutoff)
        if freed is None:
            result.restored += 1
        else:
            result.removed += 1
            result.bytes_freed += freed


def _refuse_unrelated(store: Store) -> None:
    """Raises WrongDatabase when no row refers to any file at all (see the class)."""
    with store.read() as s:
        if (s.exec(select(Attachment.id).limit(1)).first() is None
                and s.exec(select(InboundMessage.id).limit(1)).first() is None):
            raise WrongDatabase("the database refers to no stored file at all, yet old files "
                                "are there: is DATABASE_URL the database these files belong "
                                "to? Nothing was removed.")


def _put_back(trash: Path) -> None:
    """The trash of a sweep that stopped between its rename and its decision: named back,
    touched, so it is judged afresh a sweep later (a put may have relied on it)."""
    target = trash.with_name(trash.name[-64:])
    if not _DIGEST.fullmatch(target.name):
        return
    try:
        os.utime(trash)
        os.replace(trash, target)
    except FileNotFoundError:  # a running sweep decided it meanwhile
        pass


def _files(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Each file in root/ab/cd/, with its stat; a folder is read whole before its files are
    handled, so renames in it do not disturb the reading."""
    for first in _folders(root):
        for second in _folders(first):
            with os.scandir(second) as it:
                entries = [e for e in it if e.is_file(follow_symlinks=False)]
            for entry in entries:
                try:
                    yield Path(entry.path), entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue


def _folders(parent: Path) -> list[Path]:
    with os.scandir(parent) as it:
        return sorted(Path(e.path) for e in it
                      if _LEVEL.fullmatch(e.name) and e.is_dir(follow_symlinks=False))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"
