"""CrudRepository[Entity]: get, find_by, find_all, save, save_all, delete, count and exists, no code."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pico_ioc import component
from sqlalchemy import String, event
from sqlalchemy.exc import IntegrityError

from pico_sqlalchemy import (
    AppBase,
    CrudRepository,
    DeclarationError,
    Mapped,
    Page,
    PageRequest,
    SessionManager,
    Sort,
    UnknownFieldError,
    mapped_column,
    query,
    repository,
    transactional,
)
from pico_sqlalchemy.decorators import TRANSACTIONAL_ATTRIBUTE
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Member(AppBase):
    __tablename__ = "crud_members"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str | None] = mapped_column(String(80), nullable=True)


class Seat(AppBase):
    """A composite primary key."""

    __tablename__ = "crud_seats"
    row: Mapped[str] = mapped_column(String(2), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(40), nullable=True)


@repository
class Members(CrudRepository[Member]):
    @query(expr="email IS NOT NULL ORDER BY username")
    async def with_email(self) -> list[Member]: ...


@repository(entity=Seat)
class Seats(CrudRepository):  # type: ignore[type-arg]
    """The entity given to @repository instead of as a type argument."""


@component
class Club:
    def __init__(self, members: Members) -> None:
        self.members = members

    @transactional
    async def enrol_then_fail(self, *usernames: str) -> None:
        await self.members.save_all(Member(username=name) for name in usernames)
        assert await self.members.count() == len(usernames)
        raise RuntimeError("enrolment cancelled")

    @transactional
    async def rename(self, member_id: int, username: str) -> Member:
        member = await self.members.get(member_id)
        assert member is not None
        member.username = username
        return member


async def start(make_container: Any) -> tuple[Any, Members]:
    container = await make_container([MODULE])
    members = await container.aget(Members)
    await members.save_all(
        [Member(username="ann", email="ann@example.org"), Member(username="bob"), Member(username="cy")]
    )
    return container, members


class TestReads:
    async def test_get(self, make_container) -> None:
        """get(id) returns the entity or None."""
        _, members = await start(make_container)
        ann = await members.get(1)
        assert isinstance(ann, Member) and ann.username == "ann"
        assert await members.get(999) is None

    async def test_find_by(self, make_container) -> None:
        """find_by(**equals) matches columns exactly; None matches NULL; several filters combine."""
        _, members = await start(make_container)
        assert [m.username for m in await members.find_by(username="bob")] == ["bob"]
        assert [m.username for m in await members.find_by(email=None)] == ["bob", "cy"]
        assert [m.username for m in await members.find_by(username="ann", email="ann@example.org")] == ["ann"]
        assert [m.username for m in await members.find_by()] == ["ann", "bob", "cy"]

    async def test_find_by_unknown_column_refused_before_sql(self, make_container) -> None:
        """An unknown column in find_by raises UnknownFieldError naming it, and sends nothing."""
        container, members = await start(make_container)
        engine = (await container.aget(SessionManager)).engine.sync_engine
        sent: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            sent.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            with pytest.raises(UnknownFieldError) as caught:
                await members.find_by(usernme="ann")
        finally:
            event.remove(engine, "before_cursor_execute", record)
        error = caught.value
        assert (error.entity, error.field) == ("Member", "usernme")
        assert error.valid_fields == ("id", "username", "email")
        assert isinstance(error, ValueError) and "filter by" in str(error)
        assert not [s for s in sent if "crud_members" in s]

    async def test_find_all(self, make_container) -> None:
        """find_all() lists every row in key order, or sorted, or one page of a PageRequest."""
        _, members = await start(make_container)
        assert [m.username for m in await members.find_all()] == ["ann", "bob", "cy"]
        descending = await members.find_all(sorts=[Sort("username", "DESC")])
        assert [m.username for m in descending] == ["cy", "bob", "ann"]
        page = await members.find_all(PageRequest(1, 2, sorts=["username"]))
        assert isinstance(page, Page)
        assert [m.username for m in page.content] == ["cy"]
        assert (page.total_elements, page.total_pages, page.is_first, page.is_last) == (3, 2, False, True)
        with pytest.raises(ValueError, match="sorts"):
            await members.find_all(PageRequest(0, 2), sorts=["id"])  # type: ignore[call-overload]
        with pytest.raises(UnknownFieldError):
            await members.find_all(sorts=["username desc"])

    async def test_count_and_exists(self, make_container) -> None:
        """count() counts rows; exists(id) checks one key."""
        _, members = await start(make_container)
        assert await members.count() == 3
        assert await members.exists(2) is True
        assert await members.exists(99) is False

    async def test_finders_declared_on_a_crud_repository(self, make_container) -> None:
        """@query finders work beside the inherited CRUD methods, on the same entity."""
        _, members = await start(make_container)
        assert [m.username for m in await members.with_email()] == ["ann"]

    async def test_reads_are_read_only_writes_are_not(self) -> None:
        """Reads declare REQUIRED read-only scopes; writes REQUIRED read-write ones."""
        for name in ("get", "find_by", "find_all", "count", "exists"):
            assert getattr(getattr(Members, name), TRANSACTIONAL_ATTRIBUTE).read_only, name
        for name in ("save", "save_all", "delete"):
            definition = getattr(getattr(Members, name), TRANSACTIONAL_ATTRIBUTE)
            assert (definition.read_only, definition.propagation.name) == (False, "REQUIRED")


class TestWrites:
    async def test_save_sets_key_and_commits(self, make_container, peek) -> None:
        """save() flushes, so the generated key is set on return; alone it commits."""
        _, members = await start(make_container)
        dee = Member(username="dee")
        saved = await members.save(dee)
        assert saved is dee and isinstance(dee.id, int)
        assert await peek.scalar("SELECT username FROM crud_members WHERE id = :id", id=dee.id) == "dee"

    async def test_save_detached_entity_updates(self, make_container, peek) -> None:
        """An entity loaded by an earlier transaction and changed later is updated by save()."""
        _, members = await start(make_container)
        bob = await members.get(2)
        assert bob is not None
        bob.email = "bob@example.org"
        saved = await members.save(bob)
        assert saved.email == "bob@example.org"
        assert await peek.scalar("SELECT email FROM crud_members WHERE id = 2") == "bob@example.org"
        assert await members.count() == 3

    async def test_save_refuses_other_types(self, make_container) -> None:
        """save() of something that is not the repository's entity raises TypeError."""
        _, members = await start(make_container)
        with pytest.raises(TypeError, match="stores Member, got Seat"):
            await members.save(Seat(row="A", number=1))  # type: ignore[arg-type]

    async def test_constraint_violation_surfaces_from_save(self, make_container, peek) -> None:
        """A duplicate fails inside save() with SQLAlchemy's IntegrityError; nothing is committed."""
        _, members = await start(make_container)
        with pytest.raises(IntegrityError):
            await members.save(Member(username="ann"))
        assert await peek.scalar("SELECT count(*) FROM crud_members") == 3

    async def test_delete(self, make_container, peek) -> None:
        """delete() removes the row, also for an entity loaded by an earlier transaction."""
        _, members = await start(make_container)
        cy = await members.get(3)
        assert cy is not None
        await members.delete(cy)
        assert await peek.column("SELECT username FROM crud_members ORDER BY id") == ["ann", "bob"]

    async def test_writes_join_the_caller_and_roll_back(self, make_container, peek) -> None:
        """save_all() and count() join the caller's transaction; its failure undoes them."""
        container = await make_container([MODULE])
        with pytest.raises(RuntimeError, match="cancelled"):
            await (await container.aget(Club)).enrol_then_fail("eve", "fay")
        assert await peek.scalar("SELECT count(*) FROM crud_members") == 0

    async def test_changes_to_loaded_entities_commit_with_caller(self, make_container, peek) -> None:
        """An entity got inside a read-write transaction is tracked and its change committed."""
        container, _ = await start(make_container)
        await (await container.aget(Club)).rename(1, "anne")
        assert await peek.scalar("SELECT username FROM crud_members WHERE id = 1") == "anne"


class TestCompositeKeys:
    async def test_get_exists_and_save_with_composite_key(self, make_container, peek) -> None:
        """Composite keys are given as a tuple or a dict by attribute name."""
        container = await make_container([MODULE])
        seats = await container.aget(Seats)
        await seats.save_all([Seat(row="A", number=1, holder="ann"), Seat(row="A", number=2)])
        seat = await seats.get(("A", 1))
        assert isinstance(seat, Seat) and seat.holder == "ann"
        assert await seats.exists(("A", 2)) is True
        assert await seats.exists({"row": "A", "number": 2}) is True
        assert await seats.exists(("B", 1)) is False
        with pytest.raises(ValueError, match="primary key"):
            await seats.exists("A")
        assert [s.number for s in await seats.find_by(holder=None)] == [2]
        assert await peek.scalar("SELECT count(*) FROM crud_seats") == 2


class TestDeclarations:
    def test_entity_from_type_argument_or_decorator(self) -> None:
        """The entity comes from CrudRepository[Entity] or from @repository(entity=...)."""
        from pico_sqlalchemy.entity import ENTITY_ATTRIBUTE

        assert getattr(Members, ENTITY_ATTRIBUTE).entity is Member
        assert getattr(Seats, ENTITY_ATTRIBUTE).entity is Seat
        assert getattr(Seats, ENTITY_ATTRIBUTE).primary_key == ("row", "number")

    def test_missing_entity(self) -> None:
        """A CrudRepository without an entity fails at @repository, naming it."""
        with pytest.raises(DeclarationError) as caught:

            @repository
            class Nameless(CrudRepository):  # type: ignore[type-arg]
                pass

        assert caught.value.target.endswith("Nameless") and "needs an entity" in caught.value.problem

    def test_contradicting_entity(self) -> None:
        """@repository(entity=...) that contradicts the type argument fails."""
        with pytest.raises(DeclarationError, match="contradicts"):

            @repository(entity=Seat)
            class Confused(CrudRepository[Member]):
                pass
