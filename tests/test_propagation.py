"""The seven propagation modes, each checked from a second connection on both backends."""

from __future__ import annotations

import asyncio
import sys

import pytest
from pico_ioc import PicoContainer, component
from sqlalchemy import String, select, text

from pico_sqlalchemy import (
    AppBase,
    IllegalTransactionStateError,
    Mapped,
    SessionManager,
    UnexpectedRollbackError,
    get_session,
    mapped_column,
    transactional,
)
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Entry(AppBase):
    __tablename__ = "propagation_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))


class Boom(Exception):
    """A business error raised on purpose."""


async def add(name: str) -> None:
    get_session().add(Entry(name=name))
    await get_session().flush()


@component
class Ledger:
    @transactional
    async def required(self, name: str, *, fail: bool = False) -> None:
        await add(name)
        if fail:
            raise Boom(name)

    @transactional(propagation="REQUIRES_NEW")
    async def requires_new(self, name: str, *, fail: bool = False) -> None:
        await add(name)
        if fail:
            raise Boom(name)

    @transactional(propagation="NESTED")
    async def nested(self, name: str, *, fail: bool = False) -> None:
        await add(name)
        if fail:
            raise Boom(name)

    @transactional(propagation="SUPPORTS")
    async def supports(self, name: str) -> bool:
        await add(name)
        current = self._manager().current
        assert current is not None
        return current.is_active

    @transactional(propagation="MANDATORY")
    async def mandatory(self, name: str) -> None:
        await add(name)

    @transactional(propagation="NOT_SUPPORTED")
    async def not_supported(self, name: str) -> None:
        await add(name)

    @transactional(propagation="NEVER")
    async def never(self, name: str) -> None:
        await add(name)

    @staticmethod
    def _manager() -> SessionManager:
        from pico_sqlalchemy.manager import running_manager

        return running_manager()


@component
class Outer:
    """Calls an inner mode from inside a REQUIRED transaction, then optionally fails."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @transactional
    async def run(
        self,
        inner: str,
        *,
        inner_fails: bool = False,
        outer_fails: bool = False,
        catch: bool = False,
        write_first: bool = True,
    ) -> None:
        if write_first:
            await add("outer")
        try:
            await getattr(self.ledger, inner)("inner", **({"fail": True} if inner_fails else {}))
        except Boom:
            if not catch:
                raise
        if not write_first:
            await add("outer")
        await add("outer-after")
        if outer_fails:
            raise Boom("outer")


@pytest.fixture
async def container(make_container) -> PicoContainer:  # type: ignore[no-untyped-def]
    return await make_container([MODULE])


async def names(peek) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(await peek.column("SELECT name FROM propagation_entries"))


class TestRequired:
    async def test_begins_and_commits_without_outer(self, container, peek) -> None:
        """With no transaction running, REQUIRED begins one and commits it."""
        await (await container.aget(Ledger)).required("a")
        assert await names(peek) == ["a"]

    async def test_joins_outer_and_commits_with_it(self, container, peek) -> None:
        """Inside a transaction REQUIRED joins it: both writes commit together."""
        await (await container.aget(Outer)).run("required")
        assert await names(peek) == ["inner", "outer", "outer-after"]

    async def test_outer_failure_rolls_back_inner_work(self, container, peek) -> None:
        """A failure after the joined call rolls back everything, the inner write included."""
        with pytest.raises(Boom):
            await (await container.aget(Outer)).run("required", outer_fails=True)
        assert await names(peek) == []

    async def test_caught_inner_failure_marks_rollback_only(self, container, peek) -> None:
        """An inner failure the outer catches still rolls back all and raises UnexpectedRollbackError."""
        with pytest.raises(UnexpectedRollbackError) as caught:
            await (await container.aget(Outer)).run("required", inner_fails=True, catch=True)
        assert caught.value.method is not None and caught.value.method.endswith("Outer.run")
        assert await names(peek) == []

    async def test_own_set_rollback_only_is_silent(self, container, peek) -> None:
        """The scope that began the transaction may roll it back without an error."""
        manager = await container.aget(SessionManager)
        async with manager.transaction() as tx:
            await add("discarded")
            tx.set_rollback_only()
        assert await names(peek) == []


def writes_first(backend: str) -> bool:
    """Whether the outer scope may write before suspending itself.

    SQLite has one writer at a time: a suspended outer transaction that already holds the write
    lock would make the inner one wait for it (see test_sqlite_single_writer_limit).
    """
    return backend != "sqlite"


class TestRequiresNew:
    async def test_inner_commit_survives_outer_rollback(self, container, peek, backend) -> None:
        """The inner transaction commits on its own; the outer rollback does not undo it."""
        with pytest.raises(Boom):
            await (await container.aget(Outer)).run(
                "requires_new", outer_fails=True, write_first=writes_first(backend)
            )
        assert await names(peek) == ["inner"]

    async def test_inner_failure_leaves_outer_usable(self, container, peek, backend) -> None:
        """A caught inner failure rolls back the inner work only; the outer commits."""
        await (await container.aget(Outer)).run(
            "requires_new", inner_fails=True, catch=True, write_first=writes_first(backend)
        )
        assert await names(peek) == ["outer", "outer-after"]

    async def test_runs_on_its_own_connection(self, container) -> None:
        """The outer transaction is suspended: the inner one uses a different connection."""
        manager = await container.aget(SessionManager)
        # Read-only so that SQLite's outer transaction does not hold the single write lock.
        async with manager.transaction(read_only=True) as outer:
            outer_connection = await outer.session.connection()
            async with manager.transaction(propagation="REQUIRES_NEW") as inner:
                inner_connection = await inner.session.connection()
                assert inner.session is not outer.session
                inner_raw = await inner_connection.get_raw_connection()
                outer_raw = await outer_connection.get_raw_connection()
                assert inner_raw.dbapi_connection is not outer_raw.dbapi_connection
            assert manager.current is outer

    async def test_outer_resumes_after_inner(self, container, peek, backend) -> None:
        """After the inner transaction ends, the outer goes on and commits its own work."""
        manager = await container.aget(SessionManager)
        ledger = await container.aget(Ledger)
        async with manager.transaction() as outer:
            await ledger.requires_new("inner")
            await add("before")
            await ledger.requires_new("inner-2") if backend == "postgresql" else None
            await add("after")
            assert manager.current is outer
        expected = ["after", "before", "inner"] + (["inner-2"] if backend == "postgresql" else [])
        assert await names(peek) == expected


class TestNested:
    async def test_inner_failure_rolls_back_to_savepoint_only(self, container, peek) -> None:
        """A caught NESTED failure undoes the savepoint; the outer transaction commits the rest."""
        await (await container.aget(Outer)).run("nested", inner_fails=True, catch=True)
        assert await names(peek) == ["outer", "outer-after"]

    async def test_inner_success_commits_with_outer(self, container, peek) -> None:
        """A successful NESTED scope releases its savepoint and commits with the outer."""
        await (await container.aget(Outer)).run("nested")
        assert await names(peek) == ["inner", "outer", "outer-after"]

    async def test_outer_rollback_discards_released_savepoint(self, container, peek) -> None:
        """Work of a released savepoint is still rolled back with its outer transaction."""
        with pytest.raises(Boom):
            await (await container.aget(Outer)).run("nested", outer_fails=True)
        assert await names(peek) == []

    async def test_without_outer_behaves_like_required(self, container, peek) -> None:
        """With no transaction running, NESTED begins one and commits it."""
        await (await container.aget(Ledger)).nested("alone")
        assert await names(peek) == ["alone"]

    async def test_savepoints_nest(self, container, peek) -> None:
        """A savepoint inside a savepoint rolls back alone."""
        manager = await container.aget(SessionManager)
        async with manager.transaction():
            await add("outer")
            async with manager.transaction(propagation="NESTED"):
                await add("level-1")
                with pytest.raises(Boom):
                    async with manager.transaction(propagation="NESTED"):
                        await add("level-2")
                        raise Boom
        assert await names(peek) == ["level-1", "outer"]


class TestSupports:
    async def test_without_transaction_each_statement_commits(self, container, peek) -> None:
        """Without a transaction the scope runs in autocommit: its writes are never discarded."""
        in_transaction = await (await container.aget(Ledger)).supports("solo")
        assert in_transaction is False
        assert await names(peek) == ["solo"]

    async def test_joins_running_transaction(self, container, peek) -> None:
        """Inside a transaction SUPPORTS joins it and rolls back with it."""
        manager = await container.aget(SessionManager)
        ledger = await container.aget(Ledger)
        with pytest.raises(Boom):
            async with manager.transaction():
                assert await ledger.supports("joined") is True
                raise Boom
        assert await names(peek) == []

    async def test_pending_objects_are_flushed_at_exit(self, container, peek) -> None:
        """An object added but never flushed in a non-transactional scope is written at its end."""
        manager = await container.aget(SessionManager)
        async with manager.transaction(propagation="SUPPORTS") as tx:
            tx.session.add(Entry(name="pending"))
        assert await names(peek) == ["pending"]


class TestMandatory:
    async def test_raises_without_transaction(self, container, peek) -> None:
        """MANDATORY with no transaction fails before running, naming the method."""
        with pytest.raises(IllegalTransactionStateError) as caught:
            await (await container.aget(Ledger)).mandatory("x")
        assert caught.value.propagation == "MANDATORY"
        assert caught.value.method is not None and "Ledger.mandatory" in caught.value.method
        assert "Ledger.mandatory" in str(caught.value)
        assert await names(peek) == []

    async def test_joins_running_transaction(self, container, peek) -> None:
        """MANDATORY inside a transaction joins it."""
        await (await container.aget(Outer)).run("mandatory")
        assert await names(peek) == ["inner", "outer", "outer-after"]


class TestNotSupported:
    async def test_suspends_outer_and_autocommits(self, container, peek, backend) -> None:
        """The outer transaction is suspended; the inner write commits even if the outer rolls back."""
        with pytest.raises(Boom):
            await (await container.aget(Outer)).run(
                "not_supported", outer_fails=True, write_first=writes_first(backend)
            )
        assert await names(peek) == ["inner"]

    async def test_outer_is_restored(self, container) -> None:
        """After the non-transactional scope the outer transaction is current again."""
        manager = await container.aget(SessionManager)
        async with manager.transaction() as outer:
            async with manager.transaction(propagation="NOT_SUPPORTED") as inner:
                assert not inner.is_active
                assert manager.current is inner
            assert manager.current is outer


class TestNever:
    async def test_runs_without_transaction(self, container, peek) -> None:
        """Without a transaction NEVER runs in autocommit."""
        await (await container.aget(Ledger)).never("free")
        assert await names(peek) == ["free"]

    async def test_raises_inside_transaction(self, container, peek) -> None:
        """NEVER inside a transaction raises; the caller's failure then rolls back its work."""
        with pytest.raises(IllegalTransactionStateError) as caught:
            await (await container.aget(Outer)).run("never")
        assert caught.value.propagation == "NEVER"
        assert await names(peek) == []


class TestStrings:
    async def test_propagation_names_are_case_insensitive(self, container, peek) -> None:
        """Propagation accepts its names as strings in any case."""
        manager = await container.aget(SessionManager)
        async with manager.transaction(propagation="requires_new") as tx:
            assert tx.is_new
            await add("lower")
        assert await names(peek) == ["lower"]


async def test_scope_never_touching_database_takes_no_connection(container) -> None:
    """A transactional method that does not use the session opens no session or connection."""
    manager = await container.aget(SessionManager)

    @transactional
    async def idle() -> str:
        tx = manager.current
        assert tx is not None
        return "session" if tx._session is not None else "none"

    assert await idle() == "none"
    async with manager.transaction():
        await asyncio.sleep(0)
        if hasattr(manager.engine.pool, "checkedout"):
            assert manager.engine.pool.checkedout() == 0


async def test_get_session_reads_what_scope_wrote(container) -> None:
    """get_session() returns the same session within a joined call chain."""
    manager = await container.aget(SessionManager)
    async with manager.transaction() as tx:
        await add("x")
        assert get_session() is tx.session
        found = (await tx.session.execute(select(Entry.name))).scalars().all()
        assert found == ["x"]
        count = (await tx.session.execute(text("SELECT count(*) FROM propagation_entries"))).scalar()
        assert count == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_single_writer_limit(make_container) -> None:
    """On SQLite a REQUIRES_NEW write waits for the suspended outer writer and then fails."""
    from sqlalchemy.exc import OperationalError

    container = await make_container([MODULE], connect_args={"timeout": 0.1})
    manager = await container.aget(SessionManager)
    ledger = await container.aget(Ledger)
    with pytest.raises(OperationalError, match="database is locked"):
        async with manager.transaction():
            await add("outer")
            await ledger.requires_new("inner")
