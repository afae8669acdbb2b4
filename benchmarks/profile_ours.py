"""Profile our path of one benchmark case with cProfile and list where the time goes.

Run ``python benchmarks/profile_ours.py --case finder --backend postgresql``. Prints the library's own
functions (``src/pico_sqlalchemy``) with their cost per call, then the overall top functions by own
time. cProfile inflates small functions; read the costs relative to each other, and confirm a hot
spot with the benchmark before acting on it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
from pathlib import Path

import run

LIBRARY = os.sep + "pico_sqlalchemy" + os.sep


async def profile(arguments: argparse.Namespace, folder: str) -> pstats.Stats:
    if arguments.backend == "sqlite":
        backend = run.Backend("sqlite", f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}", {}, 1, 1)
    else:
        settings = {"server_settings": {"search_path": run.SCHEMA}}
        backend = run.Backend("postgresql", run.POSTGRES_URL, settings, 1, 1)
    await run.prepare(backend)
    ours = run.Ours(backend)
    await ours.open()
    try:
        operations = {
            "insert+select": lambda i: ours.service.create_and_find(f"p{i}", i),
            "finder": lambda i: ours.service.find(i % run.SEED_ROWS + 1),
            "no-db": lambda _i: ours.service.nothing(),
        }
        operation = operations[arguments.case]
        for index in range(max(arguments.n // 10, 1)):
            await operation(index)
        profiler = cProfile.Profile()
        profiler.enable()
        for index in range(arguments.n):
            await operation(index)
        profiler.disable()
        return pstats.Stats(profiler)
    finally:
        await ours.close()
        await run.drop(backend)


def show(stats: pstats.Stats, n: int, top: int) -> None:
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((filename, line, name, calls, own, cumulative))
    total = max(row[5] for row in rows)
    print(f"{n} operations, {total / n * 1e6:.1f} us per operation under the profiler\n")
    print("Library functions (per operation: calls, own time, time including callees):")
    print(f"  {'function':<58} {'calls/op':>8} {'own us/op':>10} {'cum us/op':>10}")
    library = sorted((r for r in rows if LIBRARY in r[0]), key=lambda r: -r[4])
    for filename, line, name, calls, own, cumulative in library[:top]:
        where = f"{filename.split(LIBRARY)[-1]}:{line}({name})"
        print(f"  {where:<58} {calls / n:8.2f} {own / n * 1e6:10.2f} {cumulative / n * 1e6:10.2f}")
    print("\nAll functions by own time:")
    for filename, line, name, calls, own, cumulative in sorted(rows, key=lambda r: -r[4])[:top]:
        short = filename.split("site-packages" + os.sep)[-1].split(LIBRARY)[-1]
        where = f"{short}:{line}({name})"
        print(f"  {where[-58:]:<58} {calls / n:8.2f} {own / n * 1e6:10.2f} {cumulative / n * 1e6:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("insert+select", "finder", "no-db"), default="insert+select")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("-n", type=int, default=2_000, help="operations to profile")
    parser.add_argument("--top", type=int, default=25)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pico-profile-", dir=run.SHARED_MEMORY) as folder:
        stats = asyncio.run(profile(arguments, folder))
    show(stats, arguments.n, arguments.top)


if __name__ == "__main__":
    main()
