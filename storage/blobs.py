"""Content-addressed file store for raw mail and attachments, written atomically and durably."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Files named by their SHA-256; a write is durable (fsynced) before `put` returns.

    Nothing here deletes: storage/blob_sweep.py removes the files no row refers to."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes, *, fsync: bool = True) -> str:
        digest = sha256_hex(data)
        target = self.path(digest)
        try:
            # A fresh reference to old content makes it young again, so a sweep keeps it
            # (storage/blob_sweep.py). utime finds the file before it sets the time: if a
            # sweep renamed it in between, the touch landed on the sweep's copy, and the name
            # is gone; then it is written anew, as it is when the sweep took it first.
            os.utime(target)
            if target.exists():
                return digest
        except FileNotFoundError:
            pass
        except PermissionError:  # someone else's file (a copied-in data dir): still ours to use
            if target.exists():
                return digest
        created = [d for d in (target.parent.parent, target.parent) if not d.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if fsync:  # the file's entry, and the entries of any folder made for it
            for folder in {target.parent, *(d.parent for d in created)}:
                _fsync_dir(folder)
        return digest

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()


def _fsync_dir(path: Path) -> None:
    """A rename is only durable once its directory entry is (POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
