"""Benchmarks: pico-sqlalchemy's ``@transactional`` path beside hand-written SQLAlchemy and the raw driver.

Run ``python benchmarks/run.py`` (``--quick`` for a smoke run, ``--backend sqlite`` or
``--backend postgresql`` for one backend). SQLite uses a file in a temporary folder; PostgreSQL uses
``PICO_BENCH_POSTGRES_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``), in a schema
of its own (``pico_bench``) that is dropped afterwards, and is skipped when the server is unreachable.

Each case runs every variant once as a warm-up, then several timed repeats, interleaved (raw,
hand-written, ours, rotating the order each repeat) so that drift hits all variants alike; the table
shows the median. See ``benchmarks/README.md`` for the variants and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
from pico_ioc import DictSource, PicoContainer, component, configuration, init
from sqlalchemy import String, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from pico_sqlalchemy import (
    AppBase,
    CrudRepository,
    Mapped,
    SessionManager,
    mapped_column,
    query,
    repository,
    transactional,
)

POSTGRES_URL = os.environ.get("PICO_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SCHEMA = "pico_bench"
SEED_ROWS = 1_000
# Case 4 runs 200 tasks; these many transactions each keep the full run within minutes on 2 cores
# (see the README). SQLite serialises writers through its lock, so its case is smaller.
SHARED_MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None
POSTGRES_PER_TASK = 10
SQLITE_PER_TASK = 5


class BenchItem(AppBase):
    __tablename__ = "bench_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[int]


# -- our path: a @transactional service over a repository ------------------------------------------


@repository(entity=BenchItem)
class ItemRepository(CrudRepository[BenchItem]):
    """``save`` comes from CrudRepository (REQUIRED, flushes); the finder is compiled once (read-only)."""

    @query(expr="id = :id", unique=True)
    async def find_by_id(self, id: int) -> BenchItem | None: ...


@component
class ItemService:
    def __init__(self, items: ItemRepository) -> None:
        self.items = items

    @transactional
    async def create_and_find(self, name: str, value: int) -> BenchItem | None:
        saved = await self.items.save(BenchItem(name=name, value=value))
        return await self.items.find_by_id(saved.id)

    @transactional(read_only=True)
    async def find(self, id: int) -> BenchItem | None:
        return await self.items.find_by_id(id)

    @transactional
    async def nothing(self) -> int:
        return 1


async def plain_nothing() -> int:
    return 1


# -- the backends -----------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str  # SQLAlchemy URL
    connect_args: dict[str, Any]
    per_task: int  # transactions per task in case 4
    per_task_quick: int

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite"

    @property
    def asyncpg_dsn(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def engine(self, **arguments: Any) -> AsyncEngine:
        return create_async_engine(self.url, connect_args=self.connect_args, **arguments)


async def postgres_reachable() -> str | None:
    engine = create_async_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        async with asyncio.timeout(10), engine.connect() as connection:
            await connection.execute(text("select 1"))
    except Exception as error:  # any failure to connect means "skip PostgreSQL"
        return repr(error)
    finally:
        await engine.dispose()
    return None


async def prepare(backend: Backend) -> None:
    """Create the table afresh and seed it, so that finders always hit existing rows."""
    engine = create_async_engine(backend.url, poolclass=NullPool)
    async with engine.begin() as connection:
        if not backend.is_sqlite:
            await connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            await connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            await connection.execute(text(f"SET search_path TO {SCHEMA}"))
        await connection.run_sync(BenchItem.__table__.create)
        await connection.execute(
            BenchItem.__table__.insert(), [{"name": f"seed{i}", "value": i} for i in range(SEED_ROWS)]
        )
    await engine.dispose()


async def drop(backend: Backend) -> None:
    if backend.is_sqlite:
        return
    engine = create_async_engine(backend.url, poolclass=NullPool)
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    await engine.dispose()


# -- the three variants of each case -----------------------------------------------------------------

Batch = Callable[[int], Awaitable[None]]


class Raw:
    """The floor: the driver alone. One connection for sequential cases, a pool of 10 for the rest."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.connection: Any = None
        self.pool: Any = None

    async def open(self) -> None:
        if self.backend.is_sqlite:
            self.connection = await aiosqlite.connect(make_url(self.backend.url).database)
            self.pool = asyncio.Queue()
            for _ in range(10):
                self.pool.put_nowait(await aiosqlite.connect(make_url(self.backend.url).database))
        else:
            import asyncpg

            settings = self.backend.connect_args["server_settings"]
            self.connection = await asyncpg.connect(self.backend.asyncpg_dsn, server_settings=settings)

            async def no_reset(_connection: Any) -> None:
                # SQLAlchemy's pool only rolls back on check-in (nothing to do after a commit); the
                # driver's own reset would add a round trip that no other variant pays.
                return None

            self.pool = await asyncpg.create_pool(
                self.backend.asyncpg_dsn, min_size=10, max_size=10, server_settings=settings, reset=no_reset
            )

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self.backend.is_sqlite and self.pool is not None:
            while not self.pool.empty():
                await self.pool.get_nowait().close()
        elif self.pool is not None:
            await self.pool.close()

    async def insert_select(self, connection: Any, name: str, value: int) -> Any:
        if self.backend.is_sqlite:
            (new_id,) = await connection.execute_insert(
                "INSERT INTO bench_items (name, value) VALUES (?, ?)", (name, value)
            )
            rows = await connection.execute_fetchall(
                "SELECT id, name, value FROM bench_items WHERE id = ?", (new_id,)
            )
            await connection.commit()
            return rows[0]
        async with connection.transaction():
            new_id = await connection.fetchval(
                "INSERT INTO bench_items (name, value) VALUES ($1, $2) RETURNING id", name, value
            )
            return await connection.fetchrow("SELECT id, name, value FROM bench_items WHERE id = $1", new_id)

    async def find(self, id: int) -> Any:
        connection = self.connection
        if self.backend.is_sqlite:
            # Python's sqlite3 opens no transaction for a SELECT: the statement is its own snapshot.
            rows = await connection.execute_fetchall(
                "SELECT id, name, value FROM bench_items WHERE id = ?", (id,)
            )
            return rows[0]
        async with connection.transaction(readonly=True):
            return await connection.fetchrow("SELECT id, name, value FROM bench_items WHERE id = $1", id)

    async def concurrent_one(self, name: str, value: int) -> None:
        if self.backend.is_sqlite:
            connection = await self.pool.get()
            try:
                await self.insert_select(connection, name, value)
            finally:
                self.pool.put_nowait(connection)
        else:
            async with self.pool.acquire() as connection:
                await self.insert_select(connection, name, value)


class HandWritten:
    """What an application writes without the library: ``async with factory() as s, s.begin():``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine = backend.engine(pool_size=10, max_overflow=0)
        self.factory = async_sessionmaker(self.engine, expire_on_commit=False)
        read_only = (
            self.engine if backend.is_sqlite else self.engine.execution_options(postgresql_readonly=True)
        )
        self.read_only_factory = async_sessionmaker(read_only, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()

    async def insert_select(self, name: str, value: int) -> BenchItem:
        async with self.factory() as session, session.begin():
            item = BenchItem(name=name, value=value)
            session.add(item)
            await session.flush()
            result = await session.execute(select(BenchItem).where(BenchItem.id == item.id))
            return result.scalar_one()

    async def find(self, id: int) -> BenchItem:
        async with self.read_only_factory() as session, session.begin():
            result = await session.execute(select(BenchItem).where(BenchItem.id == id))
            return result.scalar_one()

    async def nothing(self) -> int:
        async with self.factory() as _session, _session.begin():
            return 1


class Ours:
    """The library: a container, a @transactional service, a repository."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.container: PicoContainer | None = None

    async def open(self) -> None:
        settings: dict[str, Any] = {
            "url": self.backend.url,
            "pool_size": 10,
            "max_overflow": 0,
            "connect_args": self.backend.connect_args,
        }
        self.container = init(
            modules=[sys.modules[__name__], "pico_sqlalchemy"],
            config=configuration(DictSource({"database": settings})),
        )
        self.manager = await self.container.aget(SessionManager)
        self.service = await self.container.aget(ItemService)

    async def close(self) -> None:
        if self.container is None:
            return
        checked_out = self.manager.engine.pool.checkedout()  # type: ignore[attr-defined]
        await self.container.cleanup_all_async()
        if checked_out:
            raise RuntimeError(f"{checked_out} connection(s) still checked out")


# -- cases ------------------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    title: str
    unit: str  # "us" (time per operation, lower is better) or "tx/s" (higher is better)
    n: int
    repeats: int
    variants: dict[str, Batch]
    n_for: dict[str, int] = field(default_factory=dict)  # a smaller n for a slow variant

    def size(self, variant: str) -> int:
        return self.n_for.get(variant, self.n)


@dataclass
class Result:
    backend: str
    case: Case
    medians: dict[str, float]  # variant -> seconds per operation


def sequential(operation: Callable[[int], Awaitable[Any]]) -> Batch:
    async def batch(n: int) -> None:
        for index in range(n):
            await operation(index)

    return batch


def concurrent(operation: Callable[[str, int], Awaitable[Any]], tasks: int) -> Batch:
    async def batch(n: int) -> None:
        per_task = n // tasks

        async def worker(task_index: int) -> None:
            for step in range(per_task):
                await operation(f"c{task_index}:{step}", step)

        await asyncio.gather(*(worker(index) for index in range(tasks)))

    return batch


def build_cases(raw: Raw, hand: HandWritten, ours: Ours, quick: bool, per_task: int) -> list[Case]:
    ids = random.Random(1).choices(range(1, SEED_ROWS + 1), k=SEED_ROWS)

    def pick(index: int) -> int:
        return ids[index % SEED_ROWS]

    tasks = 200
    return [
        Case(
            "insert+select",
            "1. insert + select by id, one transaction",
            "us",
            n=50 if quick else 300,
            repeats=3 if quick else 5,
            variants={
                "raw": sequential(lambda i: raw.insert_select(raw.connection, f"s{i}", i)),
                "hand": sequential(lambda i: hand.insert_select(f"s{i}", i)),
                "ours": sequential(lambda i: ours.service.create_and_find(f"s{i}", i)),
            },
        ),
        Case(
            "finder",
            "2. finder by id, read-only transaction",
            "us",
            n=50 if quick else 500,
            repeats=3 if quick else 5,
            variants={
                "raw": sequential(lambda i: raw.find(pick(i))),
                "hand": sequential(lambda i: hand.find(pick(i))),
                "ours": sequential(lambda i: ours.service.find(pick(i))),
            },
        ),
        Case(
            "no-db",
            "3. transactional call, no database",
            "us",
            n=2_000 if quick else 50_000,
            repeats=3 if quick else 5,
            # The empty session costs ~50x more per call than the others: fewer calls, same precision.
            n_for={"hand": 200 if quick else 2_000},
            variants={
                "raw": sequential(lambda _i: plain_nothing()),
                "hand": sequential(lambda _i: hand.nothing()),
                "ours": sequential(lambda _i: ours.service.nothing()),
            },
        ),
        Case(
            "concurrent",
            f"4. {tasks} tasks x {per_task} tx, pool of 10",
            "tx/s",
            n=tasks * per_task,
            repeats=1 if quick else 5,
            variants={
                "raw": concurrent(raw.concurrent_one, tasks),
                "hand": concurrent(hand.insert_select, tasks),
                "ours": concurrent(ours.service.create_and_find, tasks),
            },
        ),
    ]


async def measure(case: Case) -> dict[str, float]:
    names = list(case.variants)
    for name in names:
        size = case.size(name)
        await case.variants[name](max(size // 10, 1) if case.unit == "us" else size // 5)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(case.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            gc.collect()
            started = time.perf_counter()
            await case.variants[name](case.size(name))
            samples[name].append((time.perf_counter() - started) / case.size(name))
    return {name: statistics.median(values) for name, values in samples.items()}


async def run_backend(backend: Backend, arguments: argparse.Namespace) -> list[Result]:
    await prepare(backend)
    raw, hand, ours = Raw(backend), HandWritten(backend), Ours(backend)
    try:
        await raw.open()
        await ours.open()
        per_task = arguments.per_task or (backend.per_task_quick if arguments.quick else backend.per_task)
        results = []
        for case in build_cases(raw, hand, ours, arguments.quick, per_task):
            if arguments.only and case.key not in arguments.only:
                continue
            started = time.perf_counter()
            medians = await measure(case)
            print(f"  {backend.name:<10} {case.title:<45} {time.perf_counter() - started:5.1f} s", flush=True)
            results.append(Result(backend.name, case, medians))
        return results
    finally:
        # Close everything even after a failure: an open aiosqlite connection is a thread that
        # keeps the interpreter from exiting.
        for close in (raw.close, hand.close, ours.close, lambda: drop(backend)):
            try:
                await close()
            except Exception as error:
                print(f"  cleanup of {backend.name} failed: {error!r}", file=sys.stderr)


# -- report -----------------------------------------------------------------------------------------

TARGETS = {
    "insert+select": "ours <= 1.00x hand",
    "finder": "ours <= 1.00x hand, <= 1.5x raw",
    "no-db": "ours < 5 us",
    "concurrent": "ours >= hand (tx/s)",
}


# Run to run, the medians of the SQLAlchemy variants move by a few percent on a 2-core machine.
NOISE = 0.03


def verdict(case: Case, medians: dict[str, float]) -> str:
    """``met``, ``par`` (missed by less than the noise between runs) or ``MISSED``."""
    ours, hand, raw = medians["ours"], medians["hand"], medians["raw"]
    if case.key == "no-db":
        return "met" if ours * 1e6 < 5 else "MISSED"
    # Seconds per operation throughout: for case 4, lower means more transactions per second.
    ratio = ours / hand
    if case.key == "finder" and ours > 1.5 * raw:
        return "MISSED"
    if ratio <= 1:
        return "met"
    return "par" if ratio <= 1 + NOISE else "MISSED"


def _micros(seconds: float) -> str:
    micros = seconds * 1e6
    return f"{micros:.2f}us" if micros < 10 else f"{micros:.1f}us"


def report(results: list[Result]) -> str:
    header = (
        f"| {'backend':<10} | {'case':<45} | {'raw':>10} | {'hand-written':>12} | {'ours':>10} "
        f"| {'ours/hand':>9} | {'ours/raw':>8} | {'target':<33} | {'':<6} |"
    )
    lines = [header, "|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|"]
    for result in results:
        case, medians = result.case, result.medians
        if case.unit == "us":
            cells = [_micros(medians[v]) for v in ("raw", "hand", "ours")]
            ratio_hand = medians["ours"] / medians["hand"]
            ratio_raw = medians["ours"] / medians["raw"]
        else:
            cells = [f"{1 / medians[v]:6.0f}tx/s" for v in ("raw", "hand", "ours")]
            # Throughput ratios: above 1.00 means ours completes more transactions per second.
            ratio_hand = medians["hand"] / medians["ours"]
            ratio_raw = medians["raw"] / medians["ours"]
        lines.append(
            f"| {result.backend:<10} | {case.title:<45} | {cells[0]:>10} | {cells[1]:>12} | {cells[2]:>10} "
            f"| {ratio_hand:8.2f}x | {ratio_raw:7.2f}x | {TARGETS[case.key]:<33} "
            f"| {verdict(case, medians):<6} |"
        )
    return "\n".join(lines)


async def main(arguments: argparse.Namespace) -> None:
    backends: list[Backend] = []
    # tmpfs by default: with fsync on a disk, SQLite commits cost milliseconds of jitter that
    # drown the library's overhead, which is what this measures.
    parent = arguments.sqlite_dir or SHARED_MEMORY
    with tempfile.TemporaryDirectory(prefix="pico-bench-", dir=parent) as folder:
        if arguments.backend in (None, "sqlite"):
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
            backends.append(Backend("sqlite", url, {}, per_task=SQLITE_PER_TASK, per_task_quick=1))
        if arguments.backend in (None, "postgresql"):
            problem = await postgres_reachable()
            if problem is None:
                settings = {"server_settings": {"search_path": SCHEMA}}
                backends.append(
                    Backend(
                        "postgresql", POSTGRES_URL, settings, per_task=POSTGRES_PER_TASK, per_task_quick=2
                    )
                )
            else:
                print(f"PostgreSQL skipped: {problem}")
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
            f"{'quick' if arguments.quick else 'full'} run, SQLite file in {folder}",
            flush=True,
        )
        started = time.perf_counter()
        results: list[Result] = []
        for backend in backends:
            results.extend(await run_backend(backend, arguments))
    print()
    print(report(results))
    print(
        "\nCases 1-3: median time per operation (lower is better); ratios ours/hand-written and ours/raw."
        "\nCase 4: median throughput (higher is better); ratios are ours/hand-written and ours/raw "
        "throughput.\nCase 3's raw column is a plain async function call; its hand-written column is an "
        "empty `async with factory() as s, s.begin():`."
        f"\nVerdict 'par': ours/hand-written above 1.00x by less than the run-to-run noise ({NOISE:.0%})."
        f"\nTotal {time.perf_counter() - started:.0f} s."
    )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few operations and repeats: a smoke run")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), help="run one backend only")
    parser.add_argument(
        "--only", action="append", choices=list(TARGETS), help="run this case only (repeatable)"
    )
    parser.add_argument("--per-task", type=int, help="transactions per task in case 4 (default: per backend)")
    parser.add_argument(
        "--sqlite-dir", help="folder for the SQLite file (default: /dev/shm, else the temp dir)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_arguments()))
