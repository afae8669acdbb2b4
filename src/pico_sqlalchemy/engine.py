"""Engine creation from :class:`DatabaseSettings`, with the per-dialect set-up transactions need.

How each dialect gets read-only, isolation and non-transactional (autocommit) connections:

* **PostgreSQL** (asyncpg): SQLAlchemy's ``postgresql_readonly`` and ``isolation_level``
  execution options; the server refuses writes in a read-only transaction.
* **SQLite** (aiosqlite): the driver's implicit transaction handling is switched off and this
  module emits ``BEGIN`` itself. That makes SAVEPOINTs work (the driver otherwise commits
  behind SQLAlchemy's back), lets a read-only transaction set ``PRAGMA query_only`` and lets a
  non-transactional scope run each statement in autocommit. Foreign keys are enforced
  (``PRAGMA foreign_keys = ON`` on every new connection).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

from .config import DatabaseSettings

# Execution options read by the SQLite "begin" listener below. They travel on the engine
# variants that SessionManager binds each session to, so nothing is looked up per statement.
READ_ONLY_OPTION = "pico_read_only"
STATEMENT_TIMEOUT_OPTION = "pico_statement_timeout_ms"
AUTOCOMMIT_OPTION = "pico_autocommit"
_QUERY_ONLY_STATE = "pico_query_only"


def is_sqlite(url: URL) -> bool:
    """Return whether ``url`` points at SQLite, whatever the driver."""
    return url.get_backend_name() == "sqlite"


def is_memory_sqlite(url: URL) -> bool:
    """Return whether ``url`` is an in-memory SQLite database, in any of its spellings."""
    if not is_sqlite(url):
        return False
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or url.query.get("mode") == "memory"
        or database.startswith("file::memory:")
    )


def engine_arguments(settings: DatabaseSettings, *, pooled: bool = True) -> tuple[URL, dict[str, Any]]:
    """Translate settings into ``create_async_engine`` arguments, leaving out what does not apply.

    Args:
        settings: The validated ``database`` section.
        pooled: ``False`` opens a fresh connection for each use and closes it afterwards
            (``NullPool``); in-memory SQLite keeps its single connection regardless.
    """
    url = make_url(settings.url)
    arguments: dict[str, Any] = {
        "echo": settings.echo,
        "connect_args": dict(settings.connect_args),
        "execution_options": dict(settings.execution_options),
    }
    if settings.isolation_level is not None and not is_sqlite(url):
        # SQLite transactions are always serializable, which the SQL standard allows in place
        # of any weaker level; SQLAlchemy's own switch would also turn the driver's implicit
        # BEGIN back on.
        arguments["isolation_level"] = settings.isolation_level
    if is_memory_sqlite(url):
        # Every new connection would open another, empty database: the pool holds exactly one,
        # and a task waits for it (up to pool_timeout) while another task's transaction runs.
        arguments.update(
            poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0, pool_timeout=settings.pool_timeout
        )
    elif not pooled:
        arguments["poolclass"] = NullPool
    else:
        arguments.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle,
            pool_pre_ping=settings.pool_pre_ping,
        )
    return url, arguments


def create_engine(settings: DatabaseSettings, *, pooled: bool = True) -> AsyncEngine:
    """Create an engine from ``settings``, with the SQLite transaction take-over installed.

    Args:
        settings: The validated ``database`` section.
        pooled: See :func:`engine_arguments`.
    """
    url, arguments = engine_arguments(settings, pooled=pooled)
    engine = create_async_engine(url, **arguments)
    if is_sqlite(url):
        _take_over_sqlite_transactions(engine)
    elif url.get_backend_name() == "postgresql":
        _apply_statement_timeout(engine)
    return engine


def transaction_options(
    dialect_name: str,
    *,
    read_only: bool,
    isolation_level: str | None,
    autocommit: bool,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Return the execution options that give a connection the requested transaction shape."""
    if dialect_name == "sqlite":
        options: dict[str, Any] = {}
        if read_only:
            options[READ_ONLY_OPTION] = True
        if autocommit:
            options[AUTOCOMMIT_OPTION] = True
        return options
    options = {}
    if dialect_name == "postgresql" and read_only:
        # PostgreSQL enforces read-only per transaction only, so a read-only scope without a
        # transaction runs in a read-only one: with nothing written, nothing can be lost.
        options["postgresql_readonly"] = True
        autocommit = False
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    elif isolation_level is not None:
        options["isolation_level"] = isolation_level
    if dialect_name == "postgresql" and timeout is not None and not autocommit:
        options[STATEMENT_TIMEOUT_OPTION] = max(1, int(timeout * 1000))
    return options


def _take_over_sqlite_transactions(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        # Off by default in SQLite; on here, so that a schema behaves as it does on PostgreSQL.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        autocommit = options.get(AUTOCOMMIT_OPTION, False)
        read_only = options.get(READ_ONLY_OPTION, False)
        pooled = connection.connection
        statements = []
        # The pragma sticks to the DBAPI connection: change it only when it must flip.
        if pooled.info.get(_QUERY_ONLY_STATE, False) != read_only:
            statements.append(f"PRAGMA query_only = {'ON' if read_only else 'OFF'}")
            pooled.info[_QUERY_ONLY_STATE] = read_only
        if not autocommit:
            # A writer takes the write lock up front, so busy_timeout applies instead of failing
            # with "database is locked" when a deferred transaction tries to upgrade.
            statements.append("BEGIN" if read_only else "BEGIN IMMEDIATE")
        if statements:
            _execute_on_driver(pooled.dbapi_connection, statements)


def _execute_on_driver(dbapi_connection: Any, statements: list[str]) -> None:
    """Run ``statements`` straight on aiosqlite's connection, one trip to its thread each.

    ``exec_driver_sql`` would cost three trips a statement (cursor, execute, close), paid on
    every transaction. Errors are wrapped as SQLAlchemy wraps the driver's; the statements do
    not show in ``echo`` output.
    """

    async def execute_all(driver: Any) -> None:
        for statement in statements:
            await driver.execute(statement)

    try:
        dbapi_connection.run_async(execute_all)
    except sqlite3.Error as error:
        raise DBAPIError.instance("; ".join(statements), None, error, sqlite3.Error) from error


def _apply_statement_timeout(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        # The server stops a statement still running when the caller's timeout expires, so a
        # slow query does not hold locks after the transaction was given up.
        milliseconds = connection.get_execution_options().get(STATEMENT_TIMEOUT_OPTION)
        if milliseconds is not None:
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(milliseconds)}")
