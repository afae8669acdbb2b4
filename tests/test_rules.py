"""Rollback rules, read-only enforcement, isolation, and a clean task after every failure."""

from __future__ import annotations

import contextlib
import sys

import pytest
from pico_ioc import PicoContainer, component
from sqlalchemy import String, insert, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from pico_sqlalchemy import (
    AppBase,
    Mapped,
    ReadOnlyTransactionError,
    SessionManager,
    get_session,
    mapped_column,
    transactional,
)
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Note(AppBase):
    __tablename__ = "rules_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(80), unique=True)


class Expected(Exception):
    """A business outcome that must not undo the work."""


class Narrower(Expected):
    """A subclass that rolls back again."""


async def write(body: str) -> None:
    get_session().add(Note(body=body))
    await get_session().flush()


@component
class Notes:
    @transactional(no_rollback_for=Expected)
    async def keep_on_expected(self, body: str, error: type[Exception]) -> None:
        await write(body)
        raise error(body)

    @transactional(no_rollback_for=(Expected,), rollback_for=(Narrower,))
    async def nearest_rule_wins(self, body: str, error: type[Exception]) -> None:
        await write(body)
        raise error(body)

    @transactional(rollback_for=(Exception,), no_rollback_for=(Narrower,))
    async def subclass_exempt(self, body: str, error: type[Exception]) -> None:
        await write(body)
        raise error(body)

    @transactional
    async def plain(self, body: str) -> None:
        await write(body)

    @transactional
    async def outer_catching_expected(self, body: str) -> None:
        await write(body)
        with contextlib.suppress(Expected):
            await self.keep_on_expected(body + "-inner", Expected)

    @transactional(propagation="SUPPORTS", read_only=True)
    async def read_only_without_transaction(self, how: str) -> None:
        if how == "orm":
            get_session().add(Note(body="nope"))
        else:
            await get_session().execute(text("INSERT INTO rules_notes (body) VALUES ('nope')"))

    @transactional(read_only=True)
    async def read_only_orm_write(self) -> None:
        get_session().add(Note(body="nope"))
        await get_session().flush()

    @transactional(read_only=True)
    async def read_only_core_write(self) -> None:
        await get_session().execute(insert(Note).values(body="nope"))

    @transactional(read_only=True)
    async def read_only_text_write(self) -> None:
        await get_session().execute(text("INSERT INTO rules_notes (body) VALUES ('nope')"))

    @transactional(read_only=True)
    async def read_only_count(self) -> int:
        return int((await get_session().execute(text("SELECT count(*) FROM rules_notes"))).scalar_one())

    @transactional
    async def read_write_calling_read_only(self, body: str) -> int:
        await write(body)
        return await self.joined_read_only_write(body + "-2")

    @transactional(read_only=True)
    async def joined_read_only_write(self, body: str) -> int:
        await write(body)
        return await self.read_only_count()

    @transactional(isolation_level="SERIALIZABLE")
    async def serializable_level(self) -> str:
        return str((await get_session().execute(text("SHOW transaction_isolation"))).scalar_one())

    @transactional(isolation_level="READ COMMITTED")
    async def read_committed_level(self) -> str:
        return str((await get_session().execute(text("SHOW transaction_isolation"))).scalar_one())


@pytest.fixture
async def container(make_container) -> PicoContainer:  # type: ignore[no-untyped-def]
    return await make_container([MODULE])


async def bodies(peek) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(await peek.column("SELECT body FROM rules_notes"))


class TestRollbackRules:
    async def test_any_exception_rolls_back_by_default(self, container, peek) -> None:
        """An error leaving a plain @transactional method undoes its work and propagates unchanged."""
        notes = await container.aget(Notes)
        await notes.plain("first")
        with pytest.raises(IntegrityError):
            await notes.plain("first")
        assert await bodies(peek) == ["first"]

    async def test_no_rollback_for_commits_then_reraises(self, container, peek) -> None:
        """An error listed in no_rollback_for commits the work, then reaches the caller."""
        with pytest.raises(Expected):
            await (await container.aget(Notes)).keep_on_expected("kept", Expected)
        assert await bodies(peek) == ["kept"]

    async def test_subclass_of_no_rollback_for_commits(self, container, peek) -> None:
        """no_rollback_for covers subclasses too."""
        with pytest.raises(Narrower):
            await (await container.aget(Notes)).keep_on_expected("kept-sub", Narrower)
        assert await bodies(peek) == ["kept-sub"]

    async def test_other_errors_still_roll_back(self, container, peek) -> None:
        """An error outside no_rollback_for rolls back as usual."""
        with pytest.raises(ValueError, match="gone"):
            await (await container.aget(Notes)).keep_on_expected("gone", ValueError)
        assert await bodies(peek) == []

    async def test_joined_scope_uses_its_own_rules(self, container, peek) -> None:
        """A joined scope's no_rollback_for error leaves the outer transaction free to commit."""
        await (await container.aget(Notes)).outer_catching_expected("outer")
        assert await bodies(peek) == ["outer", "outer-inner"]

    async def test_nearest_class_in_mro_wins(self, container, peek) -> None:
        """rollback_for=Narrower beats the broader no_rollback_for=Expected for a Narrower error."""
        notes = await container.aget(Notes)
        with pytest.raises(Narrower):
            await notes.nearest_rule_wins("narrow", Narrower)
        with pytest.raises(Expected):
            await notes.nearest_rule_wins("broad", Expected)
        assert await bodies(peek) == ["broad"]

    async def test_specific_exemption_beats_broad_rollback(self, container, peek) -> None:
        """no_rollback_for=Narrower beats rollback_for=Exception for a Narrower error."""
        notes = await container.aget(Notes)
        with pytest.raises(Narrower):
            await notes.subclass_exempt("exempt", Narrower)
        with pytest.raises(Expected):
            await notes.subclass_exempt("rolled", Expected)
        assert await bodies(peek) == ["exempt"]


class TestReadOnly:
    @pytest.mark.parametrize(
        "method", ["read_only_orm_write", "read_only_core_write", "read_only_text_write"]
    )
    async def test_writes_are_refused(self, container, peek, method: str) -> None:
        """ORM, Core and raw SQL writes in a read-only transaction raise and write nothing."""
        with pytest.raises((ReadOnlyTransactionError, DBAPIError)) as caught:
            await getattr(await container.aget(Notes), method)()
        if isinstance(caught.value, DBAPIError):
            # Raw SQL reaches the database, which refuses it itself.
            assert "read-only" in str(caught.value) or "readonly" in str(caught.value)
        assert await bodies(peek) == []

    async def test_database_enforces_read_only(self, container, peek) -> None:
        """The database itself refuses a raw write in a read-only transaction."""
        with pytest.raises(DBAPIError) as caught:
            await (await container.aget(Notes)).read_only_text_write()
        message = str(caught.value.orig).lower()
        assert "read-only" in message or "readonly" in message
        assert await bodies(peek) == []

    @pytest.mark.parametrize("how", ["orm", "sql"])
    async def test_enforced_without_transaction(self, container, peek, how: str) -> None:
        """read_only holds in a scope that runs without a transaction too."""
        with pytest.raises((ReadOnlyTransactionError, DBAPIError)):
            await (await container.aget(Notes)).read_only_without_transaction(how)
        assert await bodies(peek) == []

    async def test_autoflush_is_off(self, container) -> None:
        """A read-only session does not autoflush."""
        manager = await container.aget(SessionManager)
        async with manager.transaction(read_only=True) as tx:
            assert tx.session.sync_session.autoflush is False
        async with manager.transaction() as tx:
            assert tx.session.sync_session.autoflush is True

    async def test_read_only_joining_read_write_does_not_change_it(self, container, peek) -> None:
        """A read-only scope joining a read-write transaction can write through it."""
        count = await (await container.aget(Notes)).read_write_calling_read_only("rw")
        assert count == 2
        assert await bodies(peek) == ["rw", "rw-2"]

    async def test_read_only_connection_can_write_afterwards(self, container, peek) -> None:
        """After a read-only transaction the pooled connection is writable again."""
        notes = await container.aget(Notes)
        for index in range(3):
            assert await notes.read_only_count() == index
            await notes.plain(f"n{index}")
        assert await bodies(peek) == ["n0", "n1", "n2"]


class TestIsolation:
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_level_applies_to_new_transactions(self, container) -> None:
        """isolation_level sets the level of each new physical transaction, then the default returns."""
        notes = await container.aget(Notes)
        assert await notes.serializable_level() == "serializable"
        assert await notes.read_committed_level() == "read committed"
        manager = await container.aget(SessionManager)
        async with manager.transaction() as tx:
            level = (await tx.session.execute(text("SHOW transaction_isolation"))).scalar_one()
        assert level == "read committed"

    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_default_level_from_configuration(self, make_container) -> None:
        """database.isolation_level becomes the default of every transaction."""
        container = await make_container([MODULE], isolation_level="REPEATABLE READ")
        manager = await container.aget(SessionManager)
        async with manager.transaction() as tx:
            level = (await tx.session.execute(text("SHOW transaction_isolation"))).scalar_one()
        assert level == "repeatable read"


class TestCleanAfterFailure:
    async def test_next_call_in_task_starts_fresh(self, container, peek) -> None:
        """After any failure the same task's next transactional call begins a new transaction."""
        notes = await container.aget(Notes)
        manager = await container.aget(SessionManager)
        await notes.plain("once")
        with pytest.raises(IntegrityError):
            await notes.plain("once")
        assert manager.current is None
        await notes.plain("twice")
        with pytest.raises(ValueError, match="x"):
            await notes.keep_on_expected("x", ValueError)
        await notes.plain("thrice")
        assert await bodies(peek) == ["once", "thrice", "twice"]

    async def test_failed_commit_leaves_task_clean(self, container, peek) -> None:
        """A failure at commit time rolls back, propagates, and leaves the task ready."""
        manager = await container.aget(SessionManager)
        await (await container.aget(Notes)).plain("dup")
        with pytest.raises(IntegrityError):
            async with manager.transaction() as tx:
                tx.session.add(Note(body="dup"))  # flushed only by the commit
        assert manager.current is None
        await (await container.aget(Notes)).plain("after")
        assert await bodies(peek) == ["after", "dup"]


async def test_foreign_keys_enforced(container, peek) -> None:
    """A dangling foreign key is refused on both backends (SQLite's enforcement is switched on)."""
    manager = await container.aget(SessionManager)
    async with manager.transaction() as tx:
        await tx.session.execute(text("CREATE TABLE rules_parent (id INTEGER PRIMARY KEY)"))
        await tx.session.execute(
            text(
                "CREATE TABLE rules_child"
                " (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES rules_parent (id))"
            )
        )
    with pytest.raises(IntegrityError):
        async with manager.transaction() as tx:
            await tx.session.execute(text("INSERT INTO rules_child (id, parent_id) VALUES (1, 99)"))
    assert await peek.scalar("SELECT count(*) FROM rules_child") == 0
