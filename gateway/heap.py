"""The objects a process builds at start-up, kept out of the garbage collector's full passes.

A `serve` process holds some hundred thousand long-lived objects once it has started (the
ORM's mappers, compiled templates, the sentiment lexicon, the portal's routes). Each full
collection walked them all: 55-120 ms with the whole interpreter stopped, a few times a
minute under load, and every request in flight waited (bench/portal.py --processes 2: the
submissions' p99). Frozen, they are never walked again; everything made later is collected
as before. The standard library's own advice for a long-running process (`gc.freeze`).
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Collect what start-up left as garbage, then freeze every object that survived."""
    gc.collect()
    gc.freeze()
