"""Container wiring: configurers, AppBase, the transaction scope, several containers, disposal."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pico_ioc import DictSource, cleanup, component, configuration, init
from pico_ioc.exceptions import PicoError
from sqlalchemy import String, text

from pico_sqlalchemy import (
    AppBase,
    ConfigurerError,
    DatabaseConfigurer,
    Mapped,
    SessionManager,
    get_session,
    mapped_column,
    transactional,
)

MODULE = sys.modules[__name__]


class Widget(AppBase):
    __tablename__ = "container_widgets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))


CALLS: list[str] = []


@component
class LaterConfigurer(DatabaseConfigurer):
    priority = 20

    def configure(self, engine: object) -> None:
        CALLS.append("later")


@component
class TablesConfigurer(DatabaseConfigurer):
    priority = 10

    def __init__(self, base: AppBase) -> None:
        self.base = base

    async def configure_database(self, engine: object) -> None:
        CALLS.append("tables")
        async with engine.begin() as connection:  # type: ignore[attr-defined]
            await connection.run_sync(self.base.metadata.create_all)


CLEANED: list[str] = []


@component(scope="transaction")
class UnitOfWork:
    """One per physical transaction."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @cleanup
    async def close(self) -> None:
        CLEANED.append(",".join(self.items))


@component
class Workshop:
    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    @transactional
    async def build(self, name: str) -> None:
        get_session().add(Widget(name=name))


@pytest.fixture(autouse=True)
def reset_calls() -> None:
    CALLS.clear()
    CLEANED.clear()


class TestConfigurers:
    async def test_run_once_in_priority_order(self, make_container, peek) -> None:
        """Configurers run once at start, lowest priority first, sync and async hooks alike."""
        container = await make_container([MODULE])
        assert CALLS == ["tables", "later"]
        await (await container.aget(Workshop)).build("w")
        assert await peek.column("SELECT name FROM container_widgets") == ["w"]
        assert CALLS == ["tables", "later"]

    async def test_failing_hook_names_configurer(self, make_container, database_url) -> None:
        """A hook that raises stops start-up with an error naming the configurer."""

        @component
        class Broken(DatabaseConfigurer):
            def configure(self, engine: object) -> None:
                raise RuntimeError("no disk")

        module = type(sys)("broken_configurer_module")
        module.Broken = Broken  # type: ignore[attr-defined]
        with pytest.raises(PicoError) as caught:
            await make_container([module])
        error = caught.value
        while not isinstance(error, ConfigurerError) and error.__cause__ is not None:
            error = error.__cause__  # type: ignore[assignment]
        assert isinstance(error, ConfigurerError)
        assert error.configurer == "Broken"
        assert "no disk" in str(error)
        # The failed container's manager is gone: it cannot serve later calls.
        from pico_sqlalchemy.manager import _running

        assert all(manager.settings.url != database_url for manager in _running)


def run_script(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )


SCRIPT_HEAD = """
    import asyncio
    from pico_ioc import init, component, configuration, DictSource
    from sqlalchemy import text
    from pico_sqlalchemy import AppBase, DatabaseConfigurer, Mapped, SessionManager, mapped_column

    class Thing(AppBase):
        __tablename__ = "things"
        id: Mapped[int] = mapped_column(primary_key=True)

    @component
    class Tables(DatabaseConfigurer):
        def __init__(self, base: AppBase):
            self.base = base

        def configure(self, engine):
            async def create():
                async with engine.begin() as connection:
                    await connection.run_sync(self.base.metadata.create_all)
            asyncio.run(create())

    CONFIG = configuration(DictSource({"database": {"url": "sqlite+aiosqlite://"}}))

    async def use(container):
        manager = await container.aget(SessionManager)
        async with manager.transaction() as tx:
            await tx.session.execute(text("INSERT INTO things (id) VALUES (1)"))
        async with manager.transaction(read_only=True) as tx:
            print((await tx.session.execute(text("SELECT count(*) FROM things"))).scalar_one())
        await container.cleanup_all_async()
"""


class TestStartUpLoops:
    def test_init_inside_running_loop(self, tmp_path: Path) -> None:
        """init() inside a running loop: a sync hook may call asyncio.run; in-memory tables stay visible."""
        result = run_script(
            SCRIPT_HEAD
            + """
    async def main():
        container = init(modules=[__name__, "pico_sqlalchemy"], config=CONFIG)
        await use(container)

    asyncio.run(main())
""",
            tmp_path,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "1\n", "")

    def test_init_outside_loop(self, tmp_path: Path) -> None:
        """init() with no loop running, then the application's own loop."""
        result = run_script(
            SCRIPT_HEAD
            + """
    container = init(modules=[__name__, "pico_sqlalchemy"], config=CONFIG)
    asyncio.run(use(container))
""",
            tmp_path,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "1\n", "")

    def test_ashutdown_exits_cleanly(self, tmp_path: Path) -> None:
        """After ashutdown() the interpreter exits with no warning or traceback."""
        result = run_script(
            SCRIPT_HEAD.replace('"sqlite+aiosqlite://"', '"sqlite+aiosqlite:///exit.db"')
            + """
    async def main():
        container = init(modules=[__name__, "pico_sqlalchemy"], config=CONFIG)
        manager = await container.aget(SessionManager)
        async with manager.transaction() as tx:
            await tx.session.execute(text("SELECT 1"))
        await container.ashutdown()
        print("done")

    asyncio.run(main())
""",
            tmp_path,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")


class TestAppBase:
    async def test_container_gives_appbase_not_a_model(self, make_container) -> None:
        """Asking for AppBase returns the base itself even when model modules are scanned."""
        container = await make_container([MODULE])
        assert await container.aget(AppBase) is AppBase
        assert container.get(AppBase) is AppBase


class TestTransactionScope:
    async def test_one_instance_per_physical_transaction(self, make_container) -> None:
        """Joined scopes share the instance; REQUIRES_NEW gets its own; async @cleanup runs at the end."""
        container = await make_container([MODULE])
        manager = await container.aget(SessionManager)
        async with manager.transaction():
            first = await container.aget(UnitOfWork)
            first.items.append("outer")
            async with manager.transaction():
                assert await container.aget(UnitOfWork) is first
            async with manager.transaction(propagation="REQUIRES_NEW", read_only=True):
                inner = await container.aget(UnitOfWork)
                assert inner is not first
                inner.items.append("inner")
            assert CLEANED == ["inner"]
            assert await container.aget(UnitOfWork) is first
        assert CLEANED == ["inner", "outer"]

    async def test_cleaned_up_after_rollback(self, make_container) -> None:
        """The scope is cleaned up when the transaction rolls back too."""
        container = await make_container([MODULE])
        manager = await container.aget(SessionManager)
        with pytest.raises(ValueError, match="boom"):
            async with manager.transaction():
                (await container.aget(UnitOfWork)).items.append("failed")
                raise ValueError("boom")
        assert CLEANED == ["failed"]


class TestSeveralContainers:
    async def test_one_after_another_use_their_own_database(self, tmp_path: Path) -> None:
        """Containers built one after another each write to their own database."""
        counts = []
        for index in range(2):
            url = f"sqlite+aiosqlite:///{tmp_path / f'db{index}.db'}"
            container = init(
                modules=[MODULE, "pico_sqlalchemy"],
                config=configuration(DictSource({"database": {"url": url}})),
            )
            workshop = await container.aget(Workshop)
            for _ in range(index + 1):
                await workshop.build(f"c{index}")
            manager = await container.aget(SessionManager)
            async with manager.transaction(read_only=True) as tx:
                counts.append(
                    (await tx.session.execute(text("SELECT count(*) FROM container_widgets"))).scalar_one()
                )
            await container.cleanup_all_async()
        assert counts == [1, 2]

    async def test_disposed_engine_has_no_connections(self, make_container) -> None:
        """cleanup_all_async() disposes the engine: the pool holds no connection afterwards."""
        container = await make_container([MODULE])
        manager = await container.aget(SessionManager)
        await (await container.aget(Workshop)).build("x")
        await container.cleanup_all_async()
        pool = manager.engine.pool
        assert pool.checkedin() == 0  # type: ignore[attr-defined]


def test_pico_boot_entry_point() -> None:
    """The package registers itself for pico-boot's module discovery."""
    from importlib.metadata import entry_points

    found = {entry.name: entry.value for entry in entry_points(group="pico_boot.modules")}
    assert found.get("pico_sqlalchemy") == "pico_sqlalchemy"
