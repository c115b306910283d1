"""Structured logs: every line carries the ids of the work it belongs to.

An HTTP request gets a request id (the caller's `X-Request-ID` when it is sane, else a new
one); an inbound message its spool id and Message-ID; an outgoing mail its outbox id. The ids
live in a context variable, so lines logged deep inside a step, or in a thread started with
`asyncio.to_thread` (which copies the context), carry them without being passed along.

`WORKESTRA_LOG_FORMAT=json` writes one JSON object per line for a log shipper; the default
`text` is for people, with the same ids as `key=value` pairs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
_ids: ContextVar[dict[str, Any]] = ContextVar("workestra_log_ids", default={})  # noqa: B039


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Add ids to every line logged inside the block (and in threads it starts)."""
    token = _ids.set({**_ids.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _ids.reset(token)


def bind(**ids: Any) -> None:
    """Add ids for the rest of the current task or thread (a request's own context)."""
    _ids.set({**_ids.get(), **{k: v for k, v in ids.items() if v is not None}})


def current() -> dict[str, Any]:
    return dict(_ids.get())


class _WithIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ids = {**_ids.get(), **getattr(record, "fields", {})}
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = (-1, "")  # the last whole second, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As logging's default ("2026-12-02 18:50:47,123"), the date written once a second:
        strftime was a tenth of a request line's cost (cProfile)."""
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%d %H:%M:%S",
                                                  self.converter(record.created)))
        return f"{self._second[1]},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        """The base class's line for the format above, built directly (without its style
        object and checks: 3.2 -> 2.7 us a request line), with the ids after the first line:
        a traceback stays below them."""
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for more in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if more:
                line += more if line.endswith("\n") else "\n" + more
        ids = getattr(record, "ids", {})
        if not ids:
            return line
        pairs = " ".join(f"{k}={_text(v)}" for k, v in ids.items())
        head, sep, rest = line.partition("\n")
        return f"{head} [{pairs}]{sep}{rest}"


_QUOTE = re.compile(r'[ "=\[\]]')


def _text(value: Any) -> str:
    if type(value) is int:  # a status, a count, an id: nothing to quote
        return str(value)
    s = value if type(value) is str else str(value)
    return json.dumps(s) if (not s or _QUOTE.search(s)) else s


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "ids", {}),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup(fmt: str = "text", level: int = logging.INFO) -> None:
    """Configure the root logger once, for the CLI's process."""
    if fmt not in FORMATS:
        raise ValueError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_WithIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # No line names its thread, process or source line. Not looking them up for every record,
    # and writing the date once a second, cut a text line from 33 to 21 us (the logging
    # HOWTO's "Optimization"). Every request writes one.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]
    for noisy in ("alembic", "mail.log", "mailparser"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
