"""Reliability under load and faults: cancellation storms, a long soak, a server that goes away,
an exhausted pool, random trees of propagation checked against a model, and hostile input.

Every case looks at the outcome from outside the library: rows through a second connection,
exception types and attributes, and the pool's checked-out count.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pico_ioc import PicoContainer, component
from sqlalchemy import String, Text, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from pico_sqlalchemy import (
    AppBase,
    CrudRepository,
    IllegalTransactionStateError,
    Mapped,
    Page,
    PageRequest,
    Propagation,
    SessionManager,
    Sort,
    UnexpectedRollbackError,
    UnknownFieldError,
    get_session,
    mapped_column,
    query,
    repository,
    transactional,
)
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Mark(AppBase):
    __tablename__ = "reliability_marks"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(200))


class Note(AppBase):
    __tablename__ = "reliability_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)


class Boom(Exception):
    """A business error raised on purpose."""


async def mark(label: str) -> None:
    await get_session().execute(
        text("INSERT INTO reliability_marks (label) VALUES (:label)"), {"label": label}
    )


async def labels(peek: Any) -> list[str]:
    return sorted(await peek.column("SELECT label FROM reliability_marks"))


def checked_out(manager: SessionManager) -> int:
    return manager.engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]


@component
class Marks:
    @transactional
    async def write(self, label: str, *, fail: bool = False) -> None:
        await mark(label)
        if fail:
            raise Boom(label)

    @transactional
    async def write_then_wait(self, label: str, pauses: list[float], finished: Callable[[str], None]) -> None:
        await mark(label)
        for pause in pauses:
            await asyncio.sleep(pause)
        # Last statement of the body: from here on only the commit runs, and a cancellation
        # that arrives during the commit waits for it.
        finished(label)

    @transactional(read_only=True)
    async def visible(self, label: str) -> bool:
        found = await get_session().execute(
            text("SELECT count(*) FROM reliability_marks WHERE label = :label"), {"label": label}
        )
        return bool(found.scalar_one())

    @transactional(read_only=True)
    async def count(self) -> int:
        return int((await get_session().execute(text("SELECT count(*) FROM reliability_marks"))).scalar_one())

    @transactional
    async def backend_pid(self) -> int:
        return int((await get_session().execute(text("SELECT pg_backend_pid()"))).scalar_one())


@pytest.fixture
async def container(make_container) -> PicoContainer:  # type: ignore[no-untyped-def]
    return await make_container([MODULE], pool_size=10, max_overflow=0)


# -- cancellation storm ------------------------------------------------------------------------------


class TestCancellationStorm:
    async def test_cancelled_transactions_leave_nothing_behind(self, backend, container, peek) -> None:
        """Tasks cancelled at random points commit nothing, return their connections and stay usable."""
        manager = await container.aget(SessionManager)
        marks = await container.aget(Marks)
        rng = random.Random(6)
        tasks = 500 if backend == "postgresql" else 200
        done: set[str] = set()
        loop = asyncio.get_running_loop()

        async def worker(index: int) -> tuple[str, bool, bool]:
            label = f"storm{index}"
            pauses = [rng.uniform(0, 0.004) for _ in range(rng.randint(0, 3))]
            me = asyncio.current_task()
            assert me is not None
            dice = rng.random()
            # 50%: cancelled after a random delay, wherever the task is then (waiting for a
            # connection, mid-statement, sleeping, committing, or already done); 15%: cancelled
            # just as the commit begins; the rest run undisturbed.
            doomed = loop.call_later(rng.uniform(0, 0.03), me.cancel) if dice < 0.5 else None

            def finished(label: str) -> None:
                done.add(label)
                if dice > 0.85:
                    loop.call_soon(me.cancel)

            cancelled = False
            try:
                await marks.write_then_wait(label, pauses, finished)
            except asyncio.CancelledError:
                cancelled = True
                me.uncancel()
            finally:
                if doomed is not None:
                    doomed.cancel()
            # The same task, right after: no transaction left in its context, and a new one works.
            assert manager.current is None
            assert me.cancelling() == 0
            return label, cancelled, await marks.visible(label)

        outcomes = await asyncio.gather(*(worker(index) for index in range(tasks)))

        cancelled = [label for label, was_cancelled, _ in outcomes if was_cancelled]
        assert len(cancelled) > tasks // 4, "the storm should cancel a good share of the tasks"
        assert any(label not in done for label in cancelled), "some cancellations must land mid-body"
        assert any(label in done for label in cancelled), "some cancellations must land in the commit"
        # A body that finished was committed (even if the cancellation arrived during the commit);
        # one that was interrupted was rolled back. Seen from inside each task and from outside.
        assert {label for label, _, seen in outcomes if seen} == done
        assert set(await labels(peek)) == done
        assert checked_out(manager) == 0
        assert manager.current is None
        await marks.write("after-storm")
        assert "after-storm" in await labels(peek)


# -- soak ----------------------------------------------------------------------------------------------


@component
class Soak:
    """One top-level transaction of each shape; the comment says which rows survive."""

    def __init__(self, marks: Marks) -> None:
        self.marks = marks

    @transactional
    async def commit(self, label: str) -> None:  # label
        await mark(label)

    @transactional
    async def rollback(self, label: str) -> None:  # nothing; raises Boom
        await mark(label)
        raise Boom(label)

    @transactional
    async def rollback_only(self, label: str) -> None:  # nothing; raises UnexpectedRollbackError
        await mark(label)
        with contextlib.suppress(Boom):
            await self.marks.write(f"{label}/joined", fail=True)

    @transactional
    async def nested(self, label: str, fail: bool) -> None:  # label, and label/savepoint unless fail
        await mark(label)
        with contextlib.suppress(Boom):
            await self.savepoint(f"{label}/savepoint", fail)

    @transactional(propagation="NESTED")
    async def savepoint(self, label: str, fail: bool) -> None:
        await mark(label)
        if fail:
            raise Boom(label)

    @transactional
    async def requires_new(self, label: str, fail: bool) -> None:  # label/new, and label unless fail
        # The inner transaction runs first: on SQLite an outer writer would hold the only write lock.
        await self.independent(f"{label}/new")
        await mark(label)
        if fail:
            raise Boom(label)

    @transactional(propagation="REQUIRES_NEW")
    async def independent(self, label: str) -> None:
        await mark(label)


SOAK_SHAPES = (
    "commit",
    "rollback",
    "rollback_only",
    "nested",
    "nested_fail",
    "requires_new",
    "requires_new_fail",
)


async def soak_one(soak: Soak, index: int, expected: set[str]) -> None:
    shape = SOAK_SHAPES[index % len(SOAK_SHAPES)]
    label = f"{shape}:{index}"
    if shape == "commit":
        await soak.commit(label)
        expected.add(label)
    elif shape == "rollback":
        with pytest.raises(Boom):
            await soak.rollback(label)
    elif shape == "rollback_only":
        with pytest.raises(UnexpectedRollbackError):
            await soak.rollback_only(label)
    elif shape in ("nested", "nested_fail"):
        await soak.nested(label, fail=shape == "nested_fail")
        expected.add(label)
        if shape == "nested":
            expected.add(f"{label}/savepoint")
    else:
        fail = shape == "requires_new_fail"
        if fail:
            with pytest.raises(Boom):
                await soak.requires_new(label, fail=True)
        else:
            await soak.requires_new(label, fail=False)
            expected.add(label)
        expected.add(f"{label}/new")


def grown_bytes(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> tuple[int, list[str]]:
    # The test's own bookkeeping (the expected labels) grows by design; the library must not.
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    differences = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    return sum(d.size_diff for d in differences), [str(d) for d in differences[:8]]


class TestSoak:
    async def test_many_mixed_transactions_leak_nothing(self, backend, container, peek) -> None:
        """Thousands of mixed transactions leave exactly the expected rows, no connection, flat memory."""
        manager = await container.aget(SessionManager)
        soak = await container.aget(Soak)
        # PostgreSQL runs the full 10,000 with 10 workers; SQLite has one writer at a time and a
        # commit costs a file sync, so it runs 2,100 (300 of each shape) one after another.
        total, workers = (10_000, 10) if backend == "postgresql" else (2_100, 1)
        expected: set[str] = set()

        async def run(indexes: range) -> None:
            async def worker(offset: int) -> None:
                for index in indexes[offset::workers]:
                    await soak_one(soak, index, expected)

            await asyncio.gather(*(worker(offset) for offset in range(workers)))

        half = total // 2
        await run(range(half))
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            await run(range(half, total))
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()

        grown, top = grown_bytes(before, after)
        # Measured: 30-100 KiB (dictionaries resizing once). Leaking 80 bytes per transaction
        # (PostgreSQL's 5,000) or 380 (SQLite's 1,050) passes 384 KiB; a session, many times over.
        assert grown < 384 * 1024, f"{grown} bytes still allocated after {total - half} transactions:\n" + (
            "\n".join(top)
        )
        assert checked_out(manager) == 0
        assert manager.current is None
        assert set(await labels(peek)) == expected


# -- random propagation trees against a model ----------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A call: its propagation, whether it raises at its end, whether its caller catches that."""

    mode: Propagation
    fails: bool
    caught: bool
    children: tuple[Node, ...] = ()

    def walk(self, label: str = "r") -> Iterator[tuple[str, Node]]:
        yield label, self
        for index, child in enumerate(self.children):
            yield from child.walk(f"{label}.{index}")


@component
class Tree:
    """Runs a Node: writes its label, calls its children, then fails if told to."""

    def __init__(self) -> None:
        self.by_mode = {
            Propagation.REQUIRED: self.required,
            Propagation.REQUIRES_NEW: self.requires_new,
            Propagation.NESTED: self.nested,
            Propagation.SUPPORTS: self.supports,
            Propagation.MANDATORY: self.mandatory,
            Propagation.NOT_SUPPORTED: self.not_supported,
            Propagation.NEVER: self.never,
        }

    async def call(self, node: Node, label: str) -> None:
        await self.by_mode[node.mode](node, label)

    async def body(self, node: Node, label: str) -> None:
        await mark(label)
        for index, child in enumerate(node.children):
            try:
                await self.call(child, f"{label}.{index}")
            except Exception:
                if not child.caught:
                    raise
        if node.fails:
            raise Boom(label)

    @transactional(propagation="REQUIRED")
    async def required(self, node: Node, label: str) -> None:
        await self.body(node, label)

    @transactional(propagation="REQUIRES_NEW")
    async def requires_new(self, node: Node, label: str) -> None:
        await self.body(node, label)

    @transactional(propagation="NESTED")
    async def nested(self, node: Node, label: str) -> None:
        await self.body(node, label)

    @transactional(propagation="SUPPORTS")
    async def supports(self, node: Node, label: str) -> None:
        await self.body(node, label)

    @transactional(propagation="MANDATORY")
    async def mandatory(self, node: Node, label: str) -> None:
        await self.body(node, label)

    @transactional(propagation="NOT_SUPPORTED")
    async def not_supported(self, node: Node, label: str) -> None:
        await self.body(node, label)

    @transactional(propagation="NEVER")
    async def never(self, node: Node, label: str) -> None:
        await self.body(node, label)


@dataclass
class ModelScope:
    """The model's transaction: physical, a savepoint in one, or none (autocommit)."""

    kind: str
    parent: ModelScope | None = None
    rows: list[str] = field(default_factory=list)
    failed_inner: bool = False


class Model:
    """The semantics, written down plainly: which rows commit and what the caller sees."""

    def __init__(self) -> None:
        self.committed: set[str] = set()

    def call(self, node: Node, label: str, current: ModelScope | None) -> type[Exception] | None:
        running = current is not None and current.kind != "none"
        mode = node.mode
        if (mode is Propagation.MANDATORY and not running) or (mode is Propagation.NEVER and running):
            return IllegalTransactionStateError  # refused on entry: nothing runs
        joins = (
            (mode in (Propagation.REQUIRED, Propagation.MANDATORY) and running)
            # a scope without a transaction is joined by those that run without one too
            or (mode in (Propagation.SUPPORTS, Propagation.NEVER) and current is not None)
            or (mode is Propagation.NOT_SUPPORTED and current is not None and not running)
        )
        if joins:
            scope, action = current, "join"
        elif mode is Propagation.NESTED and running:
            scope, action = ModelScope("savepoint", parent=current), "savepoint"
        elif mode in (
            Propagation.REQUIRED,
            Propagation.REQUIRES_NEW,
            Propagation.NESTED,
            Propagation.MANDATORY,
        ):
            scope, action = ModelScope("physical"), "begin"
        else:  # SUPPORTS, NOT_SUPPORTED or NEVER that run without a transaction
            scope, action = ModelScope("none"), "without"
        assert scope is not None

        if scope.kind == "none":
            self.committed.add(label)  # autocommit: the statement has committed already
        else:
            scope.rows.append(label)
        error: type[Exception] | None = None
        for index, child in enumerate(node.children):
            child_error = self.call(child, f"{label}.{index}", scope)
            if child_error is not None and not child.caught:
                error = child_error
                break
        if error is None and node.fails:
            error = Boom

        if action == "join":
            if error is not None and scope.kind != "none":
                scope.failed_inner = True
            return error
        if action == "without":
            return error
        if error is None and scope.failed_inner:
            error = UnexpectedRollbackError
        elif error is None:
            if action == "begin":
                self.committed.update(scope.rows)
            else:
                assert scope.parent is not None
                scope.parent.rows.extend(scope.rows)
        return error


def trees(backend: str) -> st.SearchStrategy[Node]:
    modes = list(Propagation)
    if backend == "sqlite":
        # A REQUIRES_NEW or NOT_SUPPORTED write would wait for the write lock its own suspended
        # transaction holds (SQLite has one writer), so they only run on PostgreSQL.
        modes = [m for m in modes if m not in (Propagation.REQUIRES_NEW, Propagation.NOT_SUPPORTED)]
    mode = st.sampled_from(modes)
    fails = st.sampled_from([False, False, False, True])
    leaf = st.builds(Node, mode, fails, st.booleans())
    return st.recursive(
        leaf,
        lambda children: st.builds(
            Node, mode, fails, st.booleans(), st.lists(children, max_size=3).map(tuple)
        ),
        max_leaves=8,
    )


@pytest.fixture
async def tree_container(make_container) -> PicoContainer:  # type: ignore[no-untyped-def]
    # Each scope on the call stack may hold a connection: room for the deepest tree.
    return await make_container([MODULE], pool_size=12, max_overflow=0)


class TestPropagationModel:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    async def test_random_trees_commit_what_the_model_says(self, backend, tree_container, peek, data) -> None:
        """Random nested calls and failures: the caller's error and the committed rows match the model."""
        manager = await tree_container.aget(SessionManager)
        tree = await tree_container.aget(Tree)
        root = data.draw(trees(backend), label="tree")
        async with manager.engine.begin() as connection:
            await connection.execute(text("DELETE FROM reliability_marks"))

        model = Model()
        expected_error = model.call(root, "r", None)
        try:
            await tree.call(root, "r")
        except Exception as error:
            raised: type[Exception] | None = type(error)
        else:
            raised = None

        assert raised is expected_error
        assert set(await labels(peek)) == model.committed
        assert checked_out(manager) == 0
        assert manager.current is None


# -- a savepoint that cannot be released -----------------------------------------------------------


class Unique(AppBase):
    __tablename__ = "reliability_unique"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)


@component
class InsertIfNew:
    """The textbook use of NESTED: try an insert in a savepoint, carry on if it is a duplicate."""

    @transactional
    async def insert_twice_then_more(self) -> None:
        get_session().add(Unique(name="a"))
        await get_session().flush()
        with contextlib.suppress(IntegrityError):
            await self.insert("a")
        get_session().add(Unique(name="b"))
        await get_session().flush()

    @transactional(propagation="NESTED")
    async def insert(self, name: str) -> None:
        get_session().add(Unique(name=name))  # flushed when the savepoint is released


class TestSavepointRelease:
    async def test_outer_goes_on_when_the_release_fails(self, backend, container, peek) -> None:
        """An insert that fails as its savepoint is released rolls back only the savepoint."""
        # The outer scope catches the IntegrityError and goes on, as SQLAlchemy's own
        # `async with session.begin_nested():` allows.
        await (await container.aget(InsertIfNew)).insert_twice_then_more()
        assert sorted(await peek.column("SELECT name FROM reliability_unique")) == ["a", "b"]


# -- the server goes away (PostgreSQL) -----------------------------------------------------------------


async def terminate_others(peek: Any) -> list[int]:
    """Kill every other client connection to this test's database; return their pids once gone."""
    pids: list[int] = await peek.column(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    for pid in pids:
        await terminate(peek, pid)
    return pids


async def terminate(peek: Any, pid: int) -> None:
    assert await peek.scalar("SELECT pg_terminate_backend(:pid)", pid=pid) is True
    for _ in range(200):
        if not await peek.column("SELECT pid FROM pg_stat_activity WHERE pid = :pid", pid=pid):
            return
        await asyncio.sleep(0.01)


@component
class Victim:
    """Transactions that lose their connection half-way."""

    def __init__(self, peek_holder: PeekHolder) -> None:
        self.peek = peek_holder

    async def kill_my_connection(self) -> None:
        pid = (await get_session().execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await terminate(self.peek.peek, pid)

    @transactional
    async def killed_mid_transaction(self, label: str) -> None:
        await mark(label)
        await self.kill_my_connection()
        await mark(f"{label}/after-kill")

    @transactional
    async def killed_before_commit(self, label: str) -> None:
        await mark(label)
        await self.kill_my_connection()

    @transactional
    async def outer_catching(self, inner: str, errors: list[BaseException]) -> None:
        await mark("outer")
        try:
            await getattr(self, inner)()
        except DBAPIError as error:
            errors.append(error)
        await mark("outer/after")

    @transactional(propagation="NESTED")
    async def killed_in_savepoint(self) -> None:
        await mark("savepoint")
        await self.kill_my_connection()

    @transactional(propagation="REQUIRES_NEW")
    async def killed_in_requires_new(self) -> None:
        await mark("requires-new")
        await self.kill_my_connection()


@component
class PeekHolder:
    """Hands the test's second connection to components."""

    peek: Any = None


async def start_victim(make_container: Any, peek: Any) -> tuple[SessionManager, Victim, Marks]:
    """A container on a pool of two whose Victim can kill its own connection through ``peek``."""
    container = await make_container([MODULE], pool_size=2, max_overflow=0)
    (await container.aget(PeekHolder)).peek = peek
    return (
        await container.aget(SessionManager),
        await container.aget(Victim),
        await container.aget(Marks),
    )


def assert_connection_lost(error: BaseException) -> None:
    """The caller sees SQLAlchemy's own error for a dropped connection, flagged as such."""
    assert isinstance(error, DBAPIError), f"expected a DBAPIError, got {type(error).__name__}: {error}"
    assert error.connection_invalidated is True
    assert "closed" in str(error.orig)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
class TestServerGoesAway:
    async def test_pre_ping_replaces_connections_killed_between_transactions(
        self, make_container, peek
    ) -> None:
        """With pool_pre_ping, transactions after the server killed every pooled connection succeed."""
        container = await make_container([MODULE], pool_size=3, max_overflow=0, pool_pre_ping=True)
        manager = await container.aget(SessionManager)
        marks = await container.aget(Marks)
        before = set(await asyncio.gather(*(marks.backend_pid() for _ in range(3))))

        killed = await terminate_others(peek)
        assert before <= set(killed)

        await marks.write("after-kill")
        assert await labels(peek) == ["after-kill"]
        assert await marks.backend_pid() not in killed
        assert checked_out(manager) == 0

    async def test_without_pre_ping_the_first_use_fails_clearly_then_recovers(
        self, make_container, peek
    ) -> None:
        """Without pre-ping, the first transaction on a dead connection fails clearly; the next succeeds."""
        container = await make_container([MODULE], pool_size=1, max_overflow=0)
        manager = await container.aget(SessionManager)
        marks = await container.aget(Marks)
        await marks.write("before")
        await terminate_others(peek)

        with pytest.raises(DBAPIError) as caught:
            await marks.write("lost")
        assert_connection_lost(caught.value)
        assert checked_out(manager) == 0
        assert manager.current is None

        await marks.write("recovered")
        assert await labels(peek) == ["before", "recovered"]

    async def test_killed_mid_transaction(self, make_container, peek) -> None:
        """A connection killed between two statements: the error reaches the caller, nothing commits."""
        manager, victim, marks = await start_victim(make_container, peek)

        with pytest.raises(DBAPIError) as caught:
            await victim.killed_mid_transaction("doomed")
        assert_connection_lost(caught.value)
        assert checked_out(manager) == 0
        assert manager.current is None

        await marks.write("next")
        assert await labels(peek) == ["next"]

    async def test_killed_before_commit(self, make_container, peek) -> None:
        """A connection killed after the last statement: the commit fails clearly, nothing commits."""
        manager, victim, marks = await start_victim(make_container, peek)

        with pytest.raises(DBAPIError) as caught:
            await victim.killed_before_commit("doomed")
        assert_connection_lost(caught.value)
        assert checked_out(manager) == 0
        assert manager.current is None

        await marks.write("next")
        assert await labels(peek) == ["next"]

    async def test_killed_in_a_savepoint(self, make_container, peek) -> None:
        """A connection killed in a savepoint: an outer scope that caught the error fails clearly next."""
        # The savepoint's caller gets the connection error; the outer scope that caught it and
        # writes on gets SQLAlchemy's PendingRollbackError; nothing commits.
        manager, victim, marks = await start_victim(make_container, peek)
        errors: list[BaseException] = []

        with pytest.raises(PendingRollbackError):
            await victim.outer_catching("killed_in_savepoint", errors)
        assert len(errors) == 1
        assert_connection_lost(errors[0])
        assert await labels(peek) == []
        assert checked_out(manager) == 0
        await marks.write("next")
        assert await labels(peek) == ["next"]

    async def test_killed_in_requires_new(self, make_container, peek) -> None:
        """A connection killed inside REQUIRES_NEW fails it alone: the suspended outer one commits."""
        manager, victim, _ = await start_victim(make_container, peek)
        errors: list[BaseException] = []

        await victim.outer_catching("killed_in_requires_new", errors)
        assert len(errors) == 1
        assert_connection_lost(errors[0])
        assert await labels(peek) == ["outer", "outer/after"]
        assert checked_out(manager) == 0


# -- pool exhaustion ----------------------------------------------------------------------------------


@component
class Greedy:
    """Holds a connection, then asks for another one with REQUIRES_NEW."""

    @transactional(read_only=True)
    async def outer(self, barrier: asyncio.Barrier | None = None) -> None:
        await get_session().execute(text("SELECT 1"))  # now this scope holds a connection
        if barrier is None:
            await self.inner()
            return
        await barrier.wait()  # every task holds one before any asks for a second
        try:
            await self.inner()
        finally:
            await barrier.wait()  # and keeps it until every task's request has ended

    @transactional(propagation="REQUIRES_NEW", read_only=True)
    async def inner(self) -> None:
        await get_session().execute(text("SELECT 1"))


class TestPoolExhaustion:
    async def test_requires_new_beyond_the_pool_times_out(self, backend, make_container) -> None:
        """REQUIRES_NEW with the only connection taken fails with the pool's TimeoutError, not a hang."""
        container = await make_container([MODULE], pool_size=1, max_overflow=0, pool_timeout=0.5)
        manager = await container.aget(SessionManager)
        greedy = await container.aget(Greedy)
        marks = await container.aget(Marks)

        async with asyncio.timeout(10):
            with pytest.raises(PoolTimeoutError) as caught:
                await greedy.outer()
        assert "QueuePool limit of size 1 overflow 0 reached" in str(caught.value)
        assert checked_out(manager) == 0
        assert manager.current is None
        await marks.write("next")
        assert await marks.count() == 1

    async def test_concurrent_nesting_beyond_the_pool_times_out(self, backend, make_container) -> None:
        """Three tasks each holding one of three connections and asking for a fourth all time out."""
        container = await make_container([MODULE], pool_size=3, max_overflow=0, pool_timeout=0.5)
        manager = await container.aget(SessionManager)
        greedy = await container.aget(Greedy)
        barrier = asyncio.Barrier(3)

        async with asyncio.timeout(10):
            results = await asyncio.gather(*(greedy.outer(barrier) for _ in range(3)), return_exceptions=True)
        assert [type(result) for result in results] == [PoolTimeoutError] * 3
        assert all("QueuePool limit of size 3 overflow 0 reached" in str(result) for result in results)
        assert checked_out(manager) == 0
        await greedy.outer()  # one task alone has room for both scopes again


# -- hostile input ------------------------------------------------------------------------------------


@component
class RawNotes:
    """Hand-written SQL through get_session(): every value travels as a bound parameter."""

    @transactional
    async def add(self, title: str, body: str) -> None:
        await get_session().execute(
            text("INSERT INTO reliability_notes (title, body) VALUES (:title, :body)"),
            {"title": title, "body": body},
        )

    @transactional(read_only=True)
    async def body_of(self, title: str) -> str | None:
        found = await get_session().execute(
            text("SELECT body FROM reliability_notes WHERE title = :title"), {"title": title}
        )
        return found.scalar_one_or_none()

    @transactional(read_only=True)
    async def titles_with_body(self, body: str) -> list[str]:
        found = await get_session().execute(
            text("SELECT title FROM reliability_notes WHERE body = :body ORDER BY title"), {"body": body}
        )
        return list(found.scalars())


@repository(entity=Note)
class Notes(CrudRepository[Note]):
    @query(expr="body = :body")
    async def with_body(self, body: str) -> list[Note]: ...

    @query(expr="title IN :titles")
    async def titled_any(self, titles: list[str]) -> list[Note]: ...

    @query(sql="SELECT body FROM reliability_notes WHERE title = :title", unique=True)
    async def body_titled(self, title: str) -> str | None: ...

    @query(expr="title <> :title")
    async def page_without(self, title: str, request: PageRequest) -> Page[Note]: ...


HOSTILE = [
    "'; DROP TABLE reliability_notes; --",
    "' OR '1'='1",
    '" OR "1"="1',
    "Robert'); DELETE FROM reliability_notes; --",
    "back\\slash \\' \\\" \\x00 \\n",
    "%_% LIKE wildcards [a-z]* %%",
    ":body :title ? $1 %s %(body)s {body}",
    "ünïcødé — 日本語 — 😀 — \u202eRTL\u202c — e\u0301 — \ufeff — \U0001f3f3\ufe0f\u200d\U0001f308",
    "line\nbreak\r\n\ttab\x0b\x0c\x1b[31m",
    "x" * 1_000_000,
]


class TestHostileInput:
    async def test_hostile_strings_round_trip_as_plain_values(self, backend, container, peek) -> None:
        """Quotes, placeholders, escapes, unicode and a megabyte string are stored and found exactly."""
        raw = await container.aget(RawNotes)
        notes = await container.aget(Notes)
        for index, value in enumerate(HOSTILE):
            await raw.add(f"t{index}", value)

        assert await peek.scalar("SELECT count(*) FROM reliability_notes") == len(HOSTILE)
        stored = dict(await peek.rows("SELECT title, body FROM reliability_notes"))
        for index, value in enumerate(HOSTILE):
            title = f"t{index}"
            assert stored[title] == value
            assert await raw.body_of(title) == value
            assert await raw.titles_with_body(value) == [title]
            assert await notes.body_titled(title) == value
            assert [note.title for note in await notes.with_body(value)] == [title]
        # The hostile values as titles match nothing, and as a list expand into bound parameters.
        assert await notes.titled_any(HOSTILE[:-1]) == []
        assert await raw.body_of(HOSTILE[0]) is None
        assert len(await notes.titled_any(["t0", "t1", *HOSTILE[:-1]])) == 2

    async def test_nul_byte(self, backend, container, peek) -> None:
        """A NUL byte round-trips on SQLite; PostgreSQL refuses it with a database error, writing nothing."""
        manager = await container.aget(SessionManager)
        raw = await container.aget(RawNotes)
        value = "before\x00after"
        if backend == "sqlite":
            await raw.add("nul", value)
            assert await raw.body_of("nul") == value
            # SQLite's length() stops at a NUL; the stored bytes hold all of it.
            assert await peek.scalar("SELECT length(CAST(body AS BLOB)) FROM reliability_notes") == len(value)
        else:
            with pytest.raises(DBAPIError) as caught:
                await raw.add("nul", value)
            assert "0x00" in str(caught.value.orig)
            assert await peek.scalar("SELECT count(*) FROM reliability_notes") == 0
            assert checked_out(manager) == 0
            await raw.add("fine", "after the refusal")
            assert await raw.body_of("fine") == "after the refusal"

    async def test_sorts_and_filters_that_try_sql_are_refused_before_any_sql(
        self, backend, container
    ) -> None:
        """Sort fields, directions and filter names carrying SQL raise before a statement is sent."""
        manager = await container.aget(SessionManager)
        notes = await container.aget(Notes)
        await notes.save(Note(title="a", body="b"))
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(manager.engine.sync_engine, "before_cursor_execute", record)
        try:
            for field_name in (
                "title; DROP TABLE reliability_notes",
                "title DESC",
                "(SELECT 1)",
                "1",
                "title--",
                "__class__",
                "metadata",
            ):
                with pytest.raises(UnknownFieldError) as caught:
                    await notes.find_all(PageRequest(sorts=[Sort(field_name)]))
                assert caught.value.field == field_name
                with pytest.raises(UnknownFieldError):
                    await notes.page_without("x", PageRequest(sorts=[field_name]))
                with pytest.raises(UnknownFieldError):
                    await notes.find_by(**{field_name: "a"})
            assert statements == []
        finally:
            event.remove(manager.engine.sync_engine, "before_cursor_execute", record)

        with pytest.raises(ValueError, match="direction"):
            Sort("title", "DESC; DROP TABLE reliability_notes")
        page = await notes.find_all(PageRequest(sorts=[Sort.desc("title")]))
        assert [note.title for note in page.content] == ["a"]
