"""Shared fixtures: one database per backend, containers that clean up, a second connection.

Every database test runs on SQLite (a file in the test's temporary folder) and on PostgreSQL
(``PICO_TEST_POSTGRES_URL``, by default the local server's ``test`` database). The run creates
a database of its own on that server, so that runs side by side do not meet, and each test gets
a fresh ``public`` schema in it. Without a reachable server the PostgreSQL cases skip with the
reason, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from pico_ioc import DictSource, PicoContainer, configuration, init
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from pico_sqlalchemy import SessionManager

SERVER_URL = make_url(
    os.environ.get("PICO_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
)
RUN_DATABASE = f"pico_sqlalchemy_test_{os.getpid()}"
POSTGRES_URL = SERVER_URL.set(database=RUN_DATABASE).render_as_string(hide_password=False)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_postgres_problem: str | bool | None = False  # False: not checked yet; None: reachable


def _check_postgres() -> str | None:
    global _postgres_problem
    if _postgres_problem is False:

        async def probe() -> None:
            engine = create_async_engine(SERVER_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            try:
                async with engine.connect() as connection:
                    await connection.execute(text(f'DROP DATABASE IF EXISTS "{RUN_DATABASE}" WITH (FORCE)'))
                    await connection.execute(text(f'CREATE DATABASE "{RUN_DATABASE}"'))
            finally:
                await engine.dispose()

        try:
            asyncio.run(asyncio.wait_for(probe(), timeout=10))
            _postgres_problem = None
        except Exception as error:  # any failure to connect means "not available"
            shown = SERVER_URL.render_as_string(hide_password=True)
            _postgres_problem = f"PostgreSQL not reachable at {shown}: {error!r}"
    return _postgres_problem  # type: ignore[return-value]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's database, if it was created."""
    if _postgres_problem is not None:
        return

    async def drop() -> None:
        engine = create_async_engine(SERVER_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{RUN_DATABASE}" WITH (FORCE)'))
        finally:
            await engine.dispose()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name; PostgreSQL cases skip (or fail in CI) without a server."""
    name: str = request.param
    if name == "postgresql":
        problem = _check_postgres()
        if problem is not None:
            if IN_CI:
                pytest.fail(f"CI=true and {problem}")
            pytest.skip(problem)
    return name


async def _reset_postgres_schema() -> None:
    engine = create_async_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture
async def database_url(backend: str, tmp_path: Any) -> str:
    """A URL to an empty database of ``backend``, owned by this test."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    await _reset_postgres_schema()
    return POSTGRES_URL


class Peek:
    """A second connection that reads what was really committed, outside the library."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as connection:
            return (await connection.execute(text(sql), params)).scalar()

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql), params)]

    async def column(self, sql: str, **params: Any) -> list[Any]:
        return [row[0] for row in await self.rows(sql, **params)]


@pytest.fixture
async def peek(database_url: str) -> AsyncIterator[Peek]:
    """Reads the database from a connection of its own."""
    reader = Peek(database_url)
    yield reader
    await reader.engine.dispose()


ContainerFactory = Callable[..., Awaitable[PicoContainer]]


@pytest.fixture
async def make_container(database_url: str) -> AsyncIterator[ContainerFactory]:
    """Build containers on this test's database; on teardown check the pool and clean up.

    Call it as ``await make_container(modules, **database_settings)``; ``"pico_sqlalchemy"``
    is always scanned.
    """
    built: list[tuple[PicoContainer, SessionManager]] = []

    async def build(modules: Iterable[Any], **database: Any) -> PicoContainer:
        settings = {"url": database_url, **database}
        container = init(
            modules=[*modules, "pico_sqlalchemy"],
            config=configuration(DictSource({"database": settings})),
        )
        built.append((container, await container.aget(SessionManager)))
        return container

    yield build
    for container, manager in built:
        pool = manager.engine.pool
        checked_out = pool.checkedout() if hasattr(pool, "checkedout") else 0
        await container.cleanup_all_async()
        assert checked_out == 0, f"{checked_out} connection(s) still checked out after the test"
