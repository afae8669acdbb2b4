"""Timeouts that really stop the work, and retries of serialization failures, deadlocks and busy SQLite."""

from __future__ import annotations

import asyncio
import sys

import pytest
from pico_ioc import PicoContainer, component
from sqlalchemy import Integer, String, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError

from pico_sqlalchemy import (
    AppBase,
    DatabaseConfigurer,
    DeclarationError,
    IllegalTransactionStateError,
    Mapped,
    Retry,
    SessionManager,
    TransactionTimeoutError,
    get_session,
    mapped_column,
    transactional,
)
from pico_sqlalchemy.retry import is_transient

MODULE = sys.modules[__name__]


class Counter(AppBase):
    __tablename__ = "retry_counters"
    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Mark(AppBase):
    __tablename__ = "retry_marks"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


@component
class CreateTables(DatabaseConfigurer):
    def __init__(self, base: AppBase) -> None:
        self.base = base

    async def configure_database(self, engine: object) -> None:
        async with engine.begin() as connection:  # type: ignore[attr-defined]
            await connection.run_sync(self.base.metadata.create_all)
            await connection.execute(text("INSERT INTO retry_counters (id, value) VALUES (1, 0), (2, 0)"))


ATTEMPTS: list[str] = []


async def increment(counter_id: int) -> None:
    session = get_session()
    row = (await session.execute(select(Counter).where(Counter.id == counter_id))).scalar_one()
    row.value += 1
    await session.flush()


@component
class Counters:
    @transactional(isolation_level="SERIALIZABLE", retry=10)
    async def increment_with_retry(self) -> None:
        ATTEMPTS.append("try")
        await increment(1)

    @transactional(isolation_level="SERIALIZABLE")
    async def increment_without_retry(self) -> None:
        await increment(1)

    @transactional(retry=3)
    async def lock_both(
        self, first: int, second: int, ready: asyncio.Event, other_ready: asyncio.Event
    ) -> None:
        ATTEMPTS.append(f"{first}->{second}")
        session = get_session()
        await session.execute(update(Counter).where(Counter.id == first).values(value=Counter.value + 1))
        if len(ATTEMPTS) <= 2:
            ready.set()
            await other_ready.wait()
        await session.execute(update(Counter).where(Counter.id == second).values(value=Counter.value + 1))

    @transactional(timeout=0.3)
    async def sleep_in_database(self) -> None:
        await get_session().execute(text("SELECT pg_sleep(5)"))

    @transactional(timeout=0.2)
    async def write_then_wait(self) -> None:
        get_session().add(Mark(name="too slow"))
        await get_session().flush()
        await asyncio.sleep(5)

    @transactional(timeout=5)
    async def fast_enough(self) -> None:
        get_session().add(Mark(name="in time"))

    @transactional
    async def outer_with_slow_joined_inner(self) -> None:
        get_session().add(Mark(name="outer"))
        await self.joined_with_short_timeout()

    @transactional(timeout=0.05)
    async def joined_with_short_timeout(self) -> None:
        await asyncio.sleep(0.2)

    @transactional
    async def outer_with_retrying_inner(self) -> None:
        await self.inner_declares_retry()

    @transactional(retry=2)
    async def inner_declares_retry(self) -> None:
        await get_session().execute(text("SELECT 1"))

    @transactional(retry=Retry(retries=20, backoff=0.02, max_backoff=0.1))
    async def write_mark(self, name: str) -> None:
        ATTEMPTS.append(name)
        get_session().add(Mark(name=name))
        await get_session().flush()


@pytest.fixture(autouse=True)
def reset_attempts() -> None:
    ATTEMPTS.clear()


@pytest.fixture
async def container(make_container) -> PicoContainer:  # type: ignore[no-untyped-def]
    return await make_container([MODULE])


class TestSerializationRetry:
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_concurrent_increments_all_land(self, make_container, peek) -> None:
        """50 tasks x 20 SERIALIZABLE increments of one row with retry: exactly 1,000, retries counted."""
        container = await make_container([MODULE], pool_size=10, max_overflow=0)
        counters = await container.aget(Counters)

        async def worker() -> None:
            for _ in range(20):
                await counters.increment_with_retry()

        await asyncio.gather(*(worker() for _ in range(50)))
        assert await peek.scalar("SELECT value FROM retry_counters WHERE id = 1") == 1000
        retries = len(ATTEMPTS) - 1000
        print(f"\n1,000 serializable increments needed {retries} retries")
        assert retries > 0

    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_without_retry_failures_reach_caller(self, make_container, peek) -> None:
        """Without retry the serialization failures reach the callers and their increments are lost."""
        container = await make_container([MODULE], pool_size=10, max_overflow=0)
        counters = await container.aget(Counters)
        results = await asyncio.gather(
            *(counters.increment_without_retry() for _ in range(50)), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        assert failures, "50 concurrent serializable increments should conflict"
        assert all(isinstance(failure, DBAPIError) and is_transient(failure) for failure in failures)
        assert await peek.scalar("SELECT value FROM retry_counters WHERE id = 1") == 50 - len(failures)

    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_deadlock_is_retried(self, container, peek) -> None:
        """Two tasks locking rows in opposite order deadlock; the loser retries and both finish."""
        counters = await container.aget(Counters)
        one_ready, two_ready = asyncio.Event(), asyncio.Event()
        await asyncio.gather(
            counters.lock_both(1, 2, one_ready, two_ready),
            counters.lock_both(2, 1, two_ready, one_ready),
        )
        assert len(ATTEMPTS) == 3  # one of the two ran twice
        assert await peek.rows("SELECT id, value FROM retry_counters ORDER BY id") == [(1, 2), (2, 2)]

    async def test_retry_on_joined_scope_is_refused(self, container, peek) -> None:
        """A scope that declares retry but joins an outer transaction fails, naming itself."""
        with pytest.raises(IllegalTransactionStateError) as caught:
            await (await container.aget(Counters)).outer_with_retrying_inner()
        assert caught.value.method is not None and "inner_declares_retry" in caught.value.method
        assert "outermost" in str(caught.value)

    def test_retry_on_mandatory_refused_at_decoration(self) -> None:
        """retry on a MANDATORY method can never apply and fails when declared."""
        with pytest.raises(DeclarationError, match="MANDATORY"):

            @transactional(propagation="MANDATORY", retry=3)
            async def always_joins() -> None: ...

    @pytest.mark.parametrize("value", [0, -1, "3", 2.5])
    def test_bad_retry_values_refused(self, value: object) -> None:
        """retry takes a positive count or a Retry policy."""
        with pytest.raises(DeclarationError, match="retry takes"):

            @transactional(retry=value)  # type: ignore[call-overload]
            async def method() -> None: ...


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_busy_writer_is_retried(make_container, peek) -> None:
    """Two writers on one SQLite file with a short busy timeout: the blocked one retries and succeeds."""
    container = await make_container([MODULE], connect_args={"timeout": 0.05})
    manager = await container.aget(SessionManager)
    counters = await container.aget(Counters)
    holding = asyncio.Event()

    async def hold_write_lock() -> None:
        async with manager.transaction() as tx:
            tx.session.add(Mark(name="holder"))
            await tx.session.flush()
            holding.set()
            await asyncio.sleep(0.4)

    async def second_writer() -> None:
        await holding.wait()
        await counters.write_mark("retried")

    await asyncio.gather(hold_write_lock(), second_writer())
    assert ATTEMPTS.count("retried") > 1
    assert sorted(await peek.column("SELECT name FROM retry_marks")) == ["holder", "retried"]


class TestTimeout:
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_server_statement_is_stopped(self, container, peek) -> None:
        """A timed-out pg_sleep raises TransactionTimeoutError; the server query is gone; pool is empty."""
        manager = await container.aget(SessionManager)
        with pytest.raises(TransactionTimeoutError) as caught:
            await (await container.aget(Counters)).sleep_in_database()
        assert caught.value.timeout == 0.3
        assert caught.value.method is not None and "sleep_in_database" in caught.value.method
        assert isinstance(caught.value, TimeoutError)
        for _ in range(50):
            running = await peek.scalar(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE query LIKE 'SELECT pg_sleep(5)%' AND state = 'active'"
            )
            if running == 0:
                break
            await asyncio.sleep(0.05)
        assert running == 0
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_statement_timeout_is_set_on_the_server(self, container) -> None:
        """A transaction with a timeout runs with SET LOCAL statement_timeout on PostgreSQL."""
        manager = await container.aget(SessionManager)
        async with manager.transaction(timeout=1.5) as tx:
            assert (await tx.session.execute(text("SHOW statement_timeout"))).scalar_one() == "1500ms"
        async with manager.transaction() as tx:
            assert (await tx.session.execute(text("SHOW statement_timeout"))).scalar_one() == "0"

    async def test_timeout_rolls_back_and_frees_connection(self, container, peek) -> None:
        """Work done before the limit is rolled back; the task is clean afterwards."""
        manager = await container.aget(SessionManager)
        counters = await container.aget(Counters)
        with pytest.raises(TransactionTimeoutError):
            await counters.write_then_wait()
        assert manager.current is None
        await counters.fast_enough()
        assert await peek.column("SELECT name FROM retry_marks") == ["in time"]

    async def test_timeout_of_joined_scope_is_ignored(self, container, peek) -> None:
        """A timeout limits the transaction a scope begins; a scope that joins one does not limit it."""
        await (await container.aget(Counters)).outer_with_slow_joined_inner()
        assert await peek.column("SELECT name FROM retry_marks") == ["outer"]

    async def test_context_manager_timeout(self, container, peek) -> None:
        """manager.transaction(timeout=...) limits the block the same way."""
        manager = await container.aget(SessionManager)
        with pytest.raises(TransactionTimeoutError) as caught:
            async with manager.transaction(timeout=0.1) as tx:
                tx.session.add(Mark(name="block"))
                await tx.session.flush()
                await asyncio.sleep(5)
        assert caught.value.method == "SessionManager.transaction()"
        assert await peek.column("SELECT name FROM retry_marks") == []

    async def test_body_timeout_error_is_not_ours(self, container) -> None:
        """A TimeoutError raised by the body itself is not mistaken for the transaction's timeout."""
        manager = await container.aget(SessionManager)
        with pytest.raises(TimeoutError) as caught:
            async with manager.transaction(timeout=5):
                raise TimeoutError("remote call")
        assert not isinstance(caught.value, TransactionTimeoutError)

    @pytest.mark.parametrize("value", [0, -1, "1", True])
    def test_bad_timeout_refused(self, value: object) -> None:
        """timeout must be a positive number of seconds."""
        with pytest.raises(DeclarationError, match="timeout"):

            @transactional(timeout=value)  # type: ignore[call-overload]
            async def method() -> None: ...


def test_classification_uses_codes_not_messages() -> None:
    """An error whose text mentions a deadlock is not transient without the code."""
    assert not is_transient(RuntimeError("deadlock detected; database is locked"))
    assert not is_transient(OperationalError("SELECT 1", {}, RuntimeError("database is locked")))
