"""Task ownership, cancellation, self-invocation and concurrency."""

from __future__ import annotations

import asyncio
import sys

import pytest
from pico_ioc import PicoContainer, component
from sqlalchemy import String, func, select, text

from pico_sqlalchemy import (
    AppBase,
    CrossTaskSessionError,
    IllegalTransactionStateError,
    Mapped,
    SessionManager,
    get_session,
    mapped_column,
    transactional,
)
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Event(AppBase):
    __tablename__ = "tasks_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))


async def write(name: str) -> None:
    get_session().add(Event(name=name))
    await get_session().flush()


@component
class Events:
    @transactional
    async def record(self, name: str) -> int:
        await write(name)
        return id(get_session())

    @transactional(propagation="MANDATORY")
    async def mandatory(self) -> None:
        await write("mandatory")

    @transactional
    async def outer_calls_self_requires_new(self, fail: bool) -> None:
        # The inner call comes first: on SQLite an outer writer would hold the only write lock.
        await self.inner_requires_new()
        await write("outer")
        if fail:
            raise RuntimeError("outer fails")

    @transactional(propagation="REQUIRES_NEW")
    async def inner_requires_new(self) -> None:
        await write("inner")

    @transactional
    async def slow(self, started: asyncio.Event) -> None:
        await write("cancelled")
        started.set()
        await asyncio.sleep(30)


@pytest.fixture
async def container(make_container) -> PicoContainer:  # type: ignore[no-untyped-def]
    return await make_container([MODULE])


async def names(peek) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(await peek.column("SELECT name FROM tasks_events"))


class TestChildTasks:
    async def test_child_required_begins_its_own_transaction(self, container, peek) -> None:
        """A task spawned inside a transaction gets its own transaction and session."""
        manager = await container.aget(SessionManager)
        events = await container.aget(Events)
        async with manager.transaction(read_only=True) as tx:
            parent_session = id(tx.session)
            child_session = await asyncio.create_task(events.record("child"))
            assert child_session != parent_session
        # The child committed on its own, although the parent was read-only.
        assert await names(peek) == ["child"]

    async def test_child_mandatory_raises(self, container) -> None:
        """MANDATORY in a child task does not see the parent's transaction."""
        manager = await container.aget(SessionManager)
        events = await container.aget(Events)
        async with manager.transaction():
            with pytest.raises(IllegalTransactionStateError):
                await asyncio.gather(events.mandatory())

    async def test_get_session_in_child_names_the_hazard(self, container) -> None:
        """get_session() in a child task refuses the parent's session."""
        manager = await container.aget(SessionManager)
        async with manager.transaction():

            async def child() -> None:
                get_session()

            with pytest.raises(ExceptionGroup) as caught:
                async with asyncio.TaskGroup() as group:
                    group.create_task(child())
        error = caught.value.exceptions[0]
        assert isinstance(error, CrossTaskSessionError)
        assert "not shared between tasks" in str(error)
        assert error.owner != error.current

    async def test_captured_session_refused_in_child(self, container) -> None:
        """Executing on a session captured from the parent fails in the child task."""
        manager = await container.aget(SessionManager)
        async with manager.transaction() as tx:
            session = tx.session

            async def child() -> None:
                await session.execute(text("SELECT 1"))

            with pytest.raises(CrossTaskSessionError):
                await asyncio.create_task(child())

    async def test_gather_children_each_commit(self, container, peek) -> None:
        """Concurrent children each run their own transaction; all their work is visible."""
        events = await container.aget(Events)
        sessions = await asyncio.gather(*(events.record(f"g{index}") for index in range(5)))
        assert len(set(sessions)) == 5
        assert await names(peek) == [f"g{index}" for index in range(5)]


class TestSelfInvocation:
    async def test_self_call_honours_requires_new(self, container, peek) -> None:
        """self.inner() from inside the component runs inner's own REQUIRES_NEW transaction."""
        with pytest.raises(RuntimeError):
            await (await container.aget(Events)).outer_calls_self_requires_new(fail=True)
        assert await names(peek) == ["inner"]


class TestCancellation:
    async def test_cancel_mid_transaction_rolls_back(self, container, peek) -> None:
        """Cancelling a task mid-transaction rolls back, frees the connection and clears the context."""
        manager = await container.aget(SessionManager)
        events = await container.aget(Events)
        started = asyncio.Event()
        task = asyncio.create_task(events.slow(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert manager.current is None
        pool = manager.engine.pool
        if hasattr(pool, "checkedout"):
            assert pool.checkedout() == 0
        assert await names(peek) == []
        await events.record("after")
        assert await names(peek) == ["after"]

    async def test_cancel_during_commit_completes_it(self, container, peek) -> None:
        """A cancellation that arrives during commit waits for the commit, then is raised."""
        manager = await container.aget(SessionManager)

        async def work() -> None:
            async with manager.transaction() as tx:
                tx.session.add(Event(name="committed"))
                # Cancel this task as the scope's commit begins.
                asyncio.get_running_loop().call_soon(task.cancel)

        task = asyncio.create_task(work())
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await names(peek) == ["committed"]
        pool = manager.engine.pool
        if hasattr(pool, "checkedout"):
            assert pool.checkedout() == 0


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_many_tasks_many_transactions(make_container, peek) -> None:
    """200 tasks x 20 transactions on a pool of 10: every row arrives, no session is shared."""
    container = await make_container([MODULE], pool_size=10, max_overflow=0)
    manager = await container.aget(SessionManager)

    @transactional
    async def one(task_index: int, step: int) -> int:
        session = get_session()
        session.add(Event(name=f"{task_index}:{step}"))
        await session.flush()
        await asyncio.sleep(0)
        assert get_session() is session
        mine = await session.execute(
            select(func.count()).select_from(Event).where(Event.name == f"{task_index}:{step}")
        )
        assert mine.scalar_one() == 1
        return id(session)

    async def worker(task_index: int) -> set[int]:
        return {await one(task_index, step) for step in range(20)}

    results = await asyncio.gather(*(worker(index) for index in range(200)))
    assert await peek.scalar("SELECT count(*) FROM tasks_events") == 4000
    assert await peek.scalar("SELECT count(DISTINCT name) FROM tasks_events") == 4000
    assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert all(len(sessions) >= 1 for sessions in results)
