"""The ``database`` configuration section: keys, defaults, validation, masking, engine options."""

from __future__ import annotations

import asyncio

import pytest
from pico_ioc import DictSource, configuration, init
from pico_ioc.exceptions import PicoError
from sqlalchemy import text

from pico_sqlalchemy import ConfigurationError, DatabaseSettings, SessionManager
from pico_sqlalchemy.config import DEFAULT_URL


def container_with(database: dict[str, object] | None):  # type: ignore[no-untyped-def]
    sources = [DictSource({"database": database})] if database is not None else []
    return init(modules=["pico_sqlalchemy"], config=configuration(*sources))


def root_error(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


class TestSettings:
    def test_defaults(self) -> None:
        """Without configuration the URL is a SQLite file through aiosqlite."""
        settings = DatabaseSettings()
        assert settings.url == DEFAULT_URL
        assert settings.url.startswith("sqlite+aiosqlite:///")
        assert settings.echo is False and settings.isolation_level is None

    def test_unknown_key_names_it_and_lists_valid_keys(self) -> None:
        """A misspelt key fails with its name and the keys that are valid."""
        with pytest.raises(ConfigurationError) as caught:
            DatabaseSettings.from_mapping({"url": "sqlite+aiosqlite://", "pool_sise": 3})
        assert caught.value.key == "pool_sise"
        assert "pool_size" in caught.value.valid_keys
        assert "database.pool_sise" in str(caught.value) and "pool_size" in str(caught.value)

    def test_strings_from_text_sources_are_coerced(self) -> None:
        """Values read from env interpolation or YAML strings get their field's type."""
        settings = DatabaseSettings.from_mapping(
            {"pool_size": "7", "echo": "true", "pool_timeout": "2.5", "pool_pre_ping": "off"}
        )
        assert (settings.pool_size, settings.echo, settings.pool_timeout, settings.pool_pre_ping) == (
            7,
            True,
            2.5,
            False,
        )

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("pool_size", "many"),
            ("echo", "maybe"),
            ("connect_args", "x"),
            ("isolation_level", "CHAOS"),
            ("isolation_level", "AUTOCOMMIT"),
            ("pool_size", -1),
            ("pool_timeout", 0),
            ("url", "not a url"),
        ],
    )
    def test_invalid_values_name_the_key(self, key: str, value: object) -> None:
        """A value of the wrong type or range fails naming the key."""
        with pytest.raises(ConfigurationError) as caught:
            DatabaseSettings.from_mapping({key: value})
        assert caught.value.key == key

    async def test_password_is_masked(self) -> None:
        """The password never shows in the repr of settings, manager or engine."""
        settings = DatabaseSettings(url="postgresql+asyncpg://app:s3cret@db.example/app")
        assert "s3cret" not in repr(settings)
        assert "***" in repr(settings)
        manager = SessionManager(settings)
        try:
            assert "s3cret" not in repr(manager) and "s3cret" not in repr(manager.engine)
        finally:
            await manager.dispose()


class TestFromContainer:
    async def test_unknown_key_fails_at_container_start(self) -> None:
        """init() fails on an unknown key, naming it and listing the valid ones."""
        with pytest.raises(PicoError) as caught:
            container_with({"url": "sqlite+aiosqlite://", "pool_sise": 3})
        error = root_error(caught.value)
        assert isinstance(error, ConfigurationError)
        assert error.key == "pool_sise"
        assert "pool_size" in str(caught.value) or "pool_size" in str(error)

    async def test_no_configuration_uses_default(self, tmp_path, monkeypatch) -> None:
        """With no database section the container starts on the default SQLite file."""
        monkeypatch.chdir(tmp_path)
        container = container_with(None)
        manager = await container.aget(SessionManager)
        assert manager.settings == DatabaseSettings()
        async with manager.transaction() as tx:
            assert (await tx.session.execute(text("SELECT 1"))).scalar_one() == 1
        await container.cleanup_all_async()
        assert (tmp_path / "pico_sqlalchemy.db").is_file()

    async def test_env_interpolation(self, tmp_path, monkeypatch) -> None:
        """Environment variables reach the section through pico-ioc's ${ENV:NAME} interpolation."""
        monkeypatch.setenv("APP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'env.db'}")
        monkeypatch.setenv("APP_POOL_SIZE", "3")
        container = container_with({"url": "${ENV:APP_DATABASE_URL}", "pool_size": "${ENV:APP_POOL_SIZE}"})
        manager = await container.aget(SessionManager)
        assert manager.settings.pool_size == 3
        assert manager.engine.pool.size() == 3  # type: ignore[attr-defined]
        assert str(tmp_path / "env.db") in manager.settings.url
        await container.cleanup_all_async()

    @pytest.mark.parametrize(
        "url",
        ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///file::memory:?uri=true"],
    )
    async def test_in_memory_spellings(self, url: str) -> None:
        """Every in-memory spelling works on one pooled connection, whatever the pool settings say."""
        container = container_with({"url": url, "pool_size": 3, "max_overflow": 1, "pool_timeout": 5})
        manager = await container.aget(SessionManager)
        assert manager.engine.pool.size() == 1  # type: ignore[attr-defined]
        assert manager.engine.pool._max_overflow == 0  # type: ignore[attr-defined]
        async with manager.transaction() as tx:
            await tx.session.execute(text("CREATE TABLE memory_check (x INTEGER)"))
            await tx.session.execute(text("INSERT INTO memory_check VALUES (1)"))
        async with manager.transaction(read_only=True) as tx:
            assert (await tx.session.execute(text("SELECT x FROM memory_check"))).scalar_one() == 1
        await container.cleanup_all_async()

    async def test_in_memory_transactions_take_turns(self) -> None:
        """Concurrent transactions on in-memory SQLite wait for its one connection instead of clashing."""
        container = container_with({"url": "sqlite+aiosqlite://"})
        manager = await container.aget(SessionManager)
        async with manager.transaction() as tx:
            await tx.session.execute(text("CREATE TABLE turns (task INTEGER)"))

        async def write(task: int) -> None:
            async with manager.transaction() as tx:
                await tx.session.execute(text("INSERT INTO turns VALUES (:task)"), {"task": task})
                await asyncio.sleep(0.01)

        await asyncio.gather(*(write(task) for task in range(5)))
        async with manager.transaction(read_only=True) as tx:
            assert (await tx.session.execute(text("SELECT count(*) FROM turns"))).scalar_one() == 5
        await container.cleanup_all_async()

    async def test_engine_options_applied(self, tmp_path) -> None:
        """echo, pool settings and execution options reach the engine."""
        container = container_with(
            {
                "url": f"sqlite+aiosqlite:///{tmp_path / 'opts.db'}",
                "echo": True,
                "pool_size": 2,
                "max_overflow": 0,
                "pool_timeout": 1.5,
                "pool_recycle": 60,
                "pool_pre_ping": True,
                "execution_options": {"compiled_cache": None},
            }
        )
        manager = await container.aget(SessionManager)
        pool = manager.engine.pool
        assert manager.engine.echo is True
        assert pool.size() == 2 and pool._max_overflow == 0 and pool._timeout == 1.5  # type: ignore[attr-defined]
        assert pool._recycle == 60 and pool._pre_ping is True  # type: ignore[attr-defined]
        assert manager.engine.get_execution_options()["compiled_cache"] is None
        await container.cleanup_all_async()
