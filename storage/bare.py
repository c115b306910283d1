"""The hottest statements on the bare driver, with SQLAlchemy's own SQL and type conversions.

A cached Core statement cost about 60 µs of SQLAlchemy's Python on this project's machines,
for 16 µs of the driver's own work (cache key, parameter dict, execution context, result
object, events): about a third of processing an inbound message went to it. A statement
wrapped in `Bare` is compiled by SQLAlchemy once per dialect; each run passes its parameters
through the type processors SQLAlchemy would apply (SQLite keeps datetimes as text and
booleans as integers) and converts its result columns the same way, so a row reads the same
whichever way it was written. A driver error is raised as SQLAlchemy's own class
(`OperationalError` stays the "store is away" signal), and a lost connection is invalidated
as SQLAlchemy would.

What a statement may not hold: parameters expanded at execution (`in_` over a list), which
change the SQL with each call; the plan refuses them when it is built.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, exc, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

executed = 0  # statements run here, for bench/pipeline.py's count (the engine's events miss them)


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    order: tuple[str, ...] | None  # a positional paramstyle's parameter names, in order
    fixed: dict[str, Any]  # values the statement carries itself (literals, LIMIT 1)
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # names whose values need converting
    row: type | None  # the result rows' class, None for a statement without a result
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # columns whose values need it


class Bare:
    """A Core statement run on the bare driver (see the module); planned once per dialect."""

    __slots__ = ("statement", "_plans")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}

    def plan(self, dialect: Dialect) -> _Plan:
        found = self._plans.get(dialect.name)
        if found is None:
            found = self._plans[dialect.name] = _make_plan(self.statement, dialect)
        return found


def insert_of(table: Table, columns: Iterable[str], *, returning_id: bool = False) -> Bare:
    """An INSERT of exactly these columns (each run gives them all), optionally RETURNING id.

    A Core insert compiled without values would name every column, `id` included."""
    statement = insert(table).values(
        {c: bindparam(c, type_=table.c[c].type) for c in columns})
    return Bare(statement.returning(table.c.id) if returning_id else statement)


def _make_plan(statement: ClauseElement, dialect: Dialect) -> _Plan:
    compiled = statement.compile(dialect=dialect)
    sql = str(compiled)
    if "POSTCOMPILE" in sql:
        raise ValueError(f"an expanding parameter cannot run on the bare driver: {sql}")
    binds = compiled.binds
    fixed = {name: b.effective_value for name, b in binds.items() if not b.required}
    convert = []
    for name, b in binds.items():
        process = b.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            convert.append((name, process))
    columns = list(getattr(statement, "exported_columns", ()))
    row = namedtuple("BareRow", [c.key for c in columns], rename=True) if columns else None
    results = []
    for index, column in enumerate(columns):
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            results.append((index, process))
    order = tuple(compiled.positiontup) if compiled.positional else None  # type: ignore[arg-type]
    return _Plan(sql, order, fixed, tuple(convert), row, tuple(results))


def rows(s: Session, bare: Bare, params: Mapping[str, Any] | None = None) -> list:
    """Run `bare` in the session's transaction; its result rows (attribute access by column
    key), or [] for a statement without a result."""
    global executed
    conn = s.connection()
    dialect = conn.dialect
    plan = bare.plan(dialect)
    values = {**plan.fixed, **params} if params else dict(plan.fixed)
    for name, process in plan.binds:
        values[name] = process(values[name])
    args = values if plan.order is None else [values[name] for name in plan.order]
    driver = conn.connection.driver_connection
    executed += 1
    try:
        cursor = driver.execute(plan.sql, args)  # type: ignore[union-attr]
        got = cursor.fetchall() if plan.row is not None else []
    except dialect.loaded_dbapi.Error as e:
        invalidated = dialect.is_disconnect(e, conn.connection.dbapi_connection, None)
        if invalidated:
            conn.invalidate(e)
        raise exc.DBAPIError.instance(plan.sql, args, e, dialect.loaded_dbapi.Error,
                                      connection_invalidated=invalidated,
                                      dialect=dialect) from e
    if not got:
        return []
    make, results = plan.row, plan.results
    if not results:
        return [make._make(r) for r in got]  # type: ignore[union-attr]
    out = []
    for r in got:
        r = list(r)
        for index, process in results:
            r[index] = process(r[index])
        out.append(make._make(r))  # type: ignore[union-attr]
    return out


def first(s: Session, bare: Bare, params: Mapping[str, Any] | None = None) -> Any | None:
    """The first result row, or None."""
    found = rows(s, bare, params)
    return found[0] if found else None


def scalar(s: Session, bare: Bare, params: Mapping[str, Any] | None = None) -> Any | None:
    """The first column of the first result row, or None."""
    found = rows(s, bare, params)
    return found[0][0] if found else None
