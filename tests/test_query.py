"""@query finders: results shaped by the return annotation, bound parameters, mistakes caught early."""

from __future__ import annotations

import collections.abc
import enum
import inspect
import sys
import typing
from collections.abc import Sequence
from typing import Any

import pytest
from pico_ioc import component
from sqlalchemy import Enum, Integer, Row, String, event
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound

from pico_sqlalchemy import (
    AppBase,
    CrudRepository,
    DeclarationError,
    Mapped,
    Page,
    PageRequest,
    Record,
    SessionManager,
    Slice,
    get_session,
    mapped_column,
    query,
    repository,
    transactional,
)
from pico_sqlalchemy.decorators import TRANSACTIONAL_ATTRIBUTE
from pico_sqlalchemy.query import QueryPlan, Shape
from pico_sqlalchemy.repository import PLAN_ATTRIBUTE
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Person(AppBase):
    __tablename__ = "query_people"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    city: Mapped[str] = mapped_column(String(40))
    age: Mapped[int] = mapped_column(Integer)


class Pet(AppBase):
    __tablename__ = "query_pets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


@repository(entity=Person)
class People:
    @query(expr="username = :username", unique=True)
    async def by_username(self, username: str) -> Person | None: ...

    @query(expr="username = :username")
    async def exactly(self, username: str) -> Person: ...

    @query(expr="city = :city", unique=True)
    async def only_in(self, city: str) -> Person | None: ...

    @query(expr="city = :city ORDER BY username")
    async def in_city(self, city: str) -> list[Person]: ...

    @query(expr="age >= :age")
    async def adults(self, age: int = 18) -> Sequence[Person]: ...

    @query(expr="city = :city")
    async def count_in(self, city: str) -> int: ...

    @query(expr="username = :username")
    async def exists(self, username: str) -> bool: ...

    @query(expr="id IN :ids ORDER BY id")
    async def with_ids(self, ids: list[int]) -> list[Person]: ...

    @query(expr="username IN :names ORDER BY username")
    async def with_names(self, names: tuple[str, ...]) -> list[Person]: ...

    @query(sql="SELECT username AS name, age FROM query_people WHERE city = :city ORDER BY username")
    async def records(self, city: str) -> list[Record]: ...

    @query(sql="SELECT username AS name, age FROM query_people WHERE city = :city ORDER BY username")
    async def dicts(self, city: str) -> list[dict[str, Any]]: ...

    @query(sql="SELECT username AS name, age FROM query_people WHERE city = :city ORDER BY username")
    async def anys(self, city: str) -> list[Any]: ...

    @query(sql="SELECT username AS name, age FROM query_people WHERE city = :city ORDER BY username")
    async def rows(self, city: str) -> list[Row[Any]]: ...

    @query(sql="SELECT username AS name, age FROM query_people WHERE username = :username", unique=True)
    async def record(self, username: str) -> Record | None: ...

    @query(sql="SELECT * FROM query_people WHERE city = :city ORDER BY id")
    async def raw_people(self, city: str) -> list[Person]: ...

    @query(sql="SELECT username FROM query_people ORDER BY username")
    async def usernames(self) -> list[str]: ...

    @query(sql="SELECT max(age) FROM query_people WHERE city = :city")
    async def oldest(self, city: str) -> int | None: ...

    @query(sql="SELECT count(*) FROM query_people")
    async def total(self) -> int: ...

    @query(sql="SELECT 1 FROM query_people WHERE age > :age")
    async def anyone_older(self, age: int) -> bool: ...

    @query(sql="UPDATE query_people SET age = age + 1 RETURNING id")
    async def birthday(self) -> list[int]: ...

    @query.expr("city = :city", paged=True)
    async def page_in(self, city: str, request: PageRequest) -> Page[Person]: ...

    @query.sql("SELECT * FROM query_people WHERE city = :city")
    async def raw_page_in(self, city: str, request: PageRequest) -> Page[Person]: ...

    @query(expr="city = :city")
    async def slice_in(self, city: str, request: PageRequest) -> Slice[Person]: ...

    @transactional(propagation="REQUIRES_NEW", read_only=True)
    @query(expr="username = :username")
    async def by_username_new(self, username: str) -> Person | None: ...

    async def add(self, username: str, city: str, age: int) -> Person:
        person = Person(username=username, city=city, age=age)
        get_session().add(person)
        return person


@repository
class Reports:
    """A repository without an entity: raw statements only."""

    @query(sql="SELECT city, count(*) AS people FROM query_people GROUP BY city ORDER BY city")
    async def per_city(self) -> list[Record]: ...


@component
class Census:
    def __init__(self, people: People, reports: Reports) -> None:
        self.people = people
        self.reports = reports

    @transactional
    async def register_and_look(self, username: str, finder: str) -> Any:
        """Add a person without flushing, then ask one finder, first thing, about Oslo."""
        get_session().add(Person(username=username, city="Oslo", age=30))
        if finder == "per_city":
            return await self.reports.per_city()
        method = getattr(self.people, finder)
        arguments: dict[str, tuple[Any, ...]] = {
            "by_username": (username,),
            "exists": (username,),
            "total": (),
            "page_in": ("Oslo", PageRequest(0, 10)),
            "raw_page_in": ("Oslo", PageRequest(0, 10)),
            "slice_in": ("Oslo", PageRequest(0, 10)),
        }
        return await method(*arguments.get(finder, ("Oslo",)))


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Shade(enum.StrEnum):
    LIGHT = "light-shade"
    DARK = "dark-shade"


class Pen(AppBase):
    __tablename__ = "query_pens"
    id: Mapped[int] = mapped_column(primary_key=True)
    color: Mapped[Color] = mapped_column(Enum(Color, native_enum=False))
    # Stored by value instead of by name: the finder must follow the column's choice.
    shade: Mapped[Shade] = mapped_column(
        Enum(Shade, native_enum=False, values_callable=lambda shades: [shade.value for shade in shades])
    )


@repository(entity=Pen)
class Pens(CrudRepository[Pen]):
    @query(expr="color = :color ORDER BY id")
    async def by_color(self, color: Color) -> list[Pen]: ...

    @query(expr="shade = :shade ORDER BY id")
    async def by_shade(self, shade: Shade) -> list[Pen]: ...

    @query(expr="color IN :colors ORDER BY id")
    async def by_colors(self, colors: list[Color]) -> list[Pen]: ...


async def start(make_container: Any) -> tuple[Any, People]:
    container = await make_container([MODULE])
    people = await container.aget(People)
    for username, city, age in [("ann", "Rome", 34), ("bob", "Rome", 17), ("cid", "Lima", 52)]:
        await people.add(username, city, age)
    return container, people


class TestEntityResults:
    async def test_unique_returns_instance_or_none(self, make_container) -> None:
        """An entity annotation gives a model instance, or None when nothing matches."""
        _, people = await start(make_container)
        ann = await people.by_username("ann")
        assert isinstance(ann, Person) and (ann.username, ann.city) == ("ann", "Rome")
        assert await people.by_username("zed") is None

    async def test_unique_with_two_rows_raises(self, make_container) -> None:
        """unique=True raises SQLAlchemy's MultipleResultsFound when two rows match."""
        _, people = await start(make_container)
        assert (await people.only_in("Lima")).username == "cid"  # type: ignore[union-attr]
        with pytest.raises(MultipleResultsFound):
            await people.only_in("Rome")

    async def test_non_optional_entity_needs_exactly_one(self, make_container) -> None:
        """A non-optional entity annotation raises NoResultFound when nothing matches."""
        _, people = await start(make_container)
        assert (await people.exactly("bob")).age == 17
        with pytest.raises(NoResultFound):
            await people.exactly("zed")

    async def test_lists_of_entities(self, make_container) -> None:
        """list[Entity] and Sequence[Entity] give lists of model instances; defaults bind too."""
        _, people = await start(make_container)
        in_rome = await people.in_city("Rome")
        assert [p.username for p in in_rome] == ["ann", "bob"]
        assert all(isinstance(p, Person) for p in in_rome)
        assert await people.in_city("Nowhere") == []
        adults = await people.adults()
        assert isinstance(adults, list) and sorted(p.username for p in adults) == ["ann", "cid"]
        assert [p.username for p in await people.adults(age=50)] == ["cid"]

    async def test_count_and_exists(self, make_container) -> None:
        """int gives a count, bool an existence check."""
        _, people = await start(make_container)
        assert await people.count_in("Rome") == 2
        assert await people.count_in("Nowhere") == 0
        assert await people.exists("ann") is True
        assert await people.exists("zed") is False

    async def test_list_argument_binds_as_in(self, make_container) -> None:
        """A list-typed argument expands into IN (...) as separate bound parameters."""
        _, people = await start(make_container)
        ids = [p.id for p in await people.adults()]
        assert [p.id for p in await people.with_ids(ids)] == sorted(ids)
        assert await people.with_ids([]) == []

    async def test_enum_arguments_bind_like_their_column(self, make_container) -> None:
        """Enum arguments reach the database as the column stores them, by name or by value."""
        container = await make_container([MODULE])
        pens = await container.aget(Pens)
        await pens.save_all(
            [Pen(color=Color.RED, shade=Shade.DARK), Pen(color=Color.BLUE, shade=Shade.LIGHT)]
        )
        assert [pen.color for pen in await pens.by_color(Color.RED)] == [Color.RED]
        assert [pen.shade for pen in await pens.by_shade(Shade.LIGHT)] == [Shade.LIGHT]
        assert len(await pens.by_colors([Color.RED, Color.BLUE])) == 2
        assert await pens.by_colors([]) == []

    async def test_empty_text_list_compares_with_its_type(self, make_container) -> None:
        """An empty IN list of strings is typed by the annotation, so PostgreSQL accepts it too."""
        _, people = await start(make_container)
        assert [p.username for p in await people.with_names(("ann", "bob"))] == ["ann", "bob"]
        assert await people.with_names(()) == []

    async def test_raw_sql_mapped_to_entities(self, make_container) -> None:
        """A full statement annotated with the entity gives model instances."""
        _, people = await start(make_container)
        found = await people.raw_people("Rome")
        assert [type(p) for p in found] == [Person, Person]
        assert [p.username for p in found] == ["ann", "bob"]


class TestRawResults:
    async def test_records_by_name_and_attribute(self, make_container) -> None:
        """list[Record], list[dict] and list[Any] rows read as row.name and row["name"]."""
        _, people = await start(make_container)
        for finder in (people.records, people.dicts, people.anys):
            rows = await finder("Rome")
            assert [type(row) for row in rows] == [Record, Record]
            assert [(row.name, row["age"]) for row in rows] == [("ann", 34), ("bob", 17)]
            assert rows[0] == {"name": "ann", "age": 34}
        with pytest.raises(AttributeError, match="no column 'missing'"):
            _ = rows[0].missing

    async def test_sqlalchemy_rows_when_annotated_row(self, make_container) -> None:
        """list[Row] gives SQLAlchemy Row objects, as annotated."""
        _, people = await start(make_container)
        rows = await people.rows("Rome")
        assert all(isinstance(row, Row) for row in rows)
        assert [(row.name, row._mapping["age"]) for row in rows] == [("ann", 34), ("bob", 17)]

    async def test_single_record(self, make_container) -> None:
        """A single Record annotation gives one row or None."""
        _, people = await start(make_container)
        assert await people.record("cid") == Record(name="cid", age=52)
        assert await people.record("zed") is None

    async def test_scalars(self, make_container) -> None:
        """Scalar annotations give the first column: one value, an optional value or a list."""
        _, people = await start(make_container)
        assert await people.usernames() == ["ann", "bob", "cid"]
        assert await people.oldest("Rome") == 34
        assert await people.oldest("Nowhere") is None
        assert await people.total() == 3
        assert await people.anyone_older(50) is True
        assert await people.anyone_older(60) is False

    async def test_repository_without_entity(self, make_container) -> None:
        """A bare @repository runs sql finders without an entity."""
        container, _ = await start(make_container)
        reports = await container.aget(Reports)
        assert [(r.city, r.people) for r in await reports.per_city()] == [("Lima", 1), ("Rome", 2)]


class TestParameters:
    async def test_values_are_bound_never_formatted(self, make_container, peek) -> None:
        """Argument values travel as bound parameters: quotes in them are data, not SQL."""
        _, people = await start(make_container)
        assert await people.by_username("x' OR '1'='1") is None
        assert await people.count_in("Rome' OR city <> '") == 0
        await people.add("o'brien", "Dublin", 40)
        assert (await people.by_username("o'brien")).city == "Dublin"  # type: ignore[union-attr]
        assert await peek.scalar("SELECT count(*) FROM query_people") == 4

    async def test_wrong_arguments_fail_like_python(self, make_container) -> None:
        """Missing, unexpected or duplicated arguments raise TypeError naming the method."""
        _, people = await start(make_container)
        with pytest.raises(TypeError, match="missing required argument"):
            await people.by_username()  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="unexpected keyword argument 'name'"):
            await people.by_username(name="ann")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="multiple values"):
            await people.by_username("ann", username="ann")  # type: ignore[misc]
        with pytest.raises(TypeError, match="takes 1 argument"):
            await people.by_username("ann", "bob")  # type: ignore[call-arg]

    async def test_call_resolves_nothing(self, make_container, monkeypatch) -> None:
        """A call neither inspects the signature nor resolves annotations: that was done once."""
        _, people = await start(make_container)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("introspection on the call path")

        monkeypatch.setattr(inspect, "signature", refuse)
        monkeypatch.setattr(typing, "get_type_hints", refuse)
        assert (await people.by_username(username="ann")) is not None
        assert (await people.page_in("Rome", PageRequest(0, 1))).total_elements == 2


class TestTransactions:
    @pytest.mark.parametrize(
        ("finder", "expected"),
        [
            ("by_username", lambda r: isinstance(r, Person) and r.username == "dee"),
            ("in_city", lambda r: [p.username for p in r] == ["dee"]),
            ("count_in", lambda r: r == 1),
            ("exists", lambda r: r is True),
            ("records", lambda r: [row.name for row in r] == ["dee"]),
            ("oldest", lambda r: r == 30),
            ("total", lambda r: r == 4),
            ("raw_people", lambda r: [p.username for p in r] == ["dee"]),
            ("page_in", lambda r: r.total_elements == 1 and r.content[0].username == "dee"),
            ("raw_page_in", lambda r: r.total_elements == 1 and r.content[0].username == "dee"),
            ("slice_in", lambda r: [p.username for p in r.content] == ["dee"]),
            ("per_city", lambda r: ("Oslo", 1) in [(row.city, row.people) for row in r]),
        ],
    )
    async def test_finders_see_pending_changes(self, make_container, finder: str, expected: Any) -> None:
        """In a read-write transaction a finder sees rows added but not yet flushed."""
        container, _ = await start(make_container)
        result = await (await container.aget(Census)).register_and_look("dee", finder)
        assert expected(result), result

    async def test_finders_run_read_only(self, make_container, peek) -> None:
        """A finder on its own runs read-only: the database refuses a write in its statement."""
        _, people = await start(make_container)
        definition = getattr(People.by_username, TRANSACTIONAL_ATTRIBUTE)
        assert (definition.read_only, definition.propagation.name) == (True, "REQUIRED")
        with pytest.raises(DBAPIError):
            await people.birthday()
        assert await peek.column("SELECT age FROM query_people ORDER BY id") == [34, 17, 52]

    async def test_own_transactional_kept(self, make_container) -> None:
        """@transactional on a finder replaces the default scope, in either decorator order."""
        _, people = await start(make_container)
        definition = getattr(People.by_username_new, TRANSACTIONAL_ATTRIBUTE)
        assert definition.propagation.name == "REQUIRES_NEW"
        assert (await people.by_username_new("ann")).age == 34  # type: ignore[union-attr]

    async def test_statement_built_once(self, make_container) -> None:
        """The plan and its statement are made when the class is decorated and reused by calls."""
        plan: QueryPlan = getattr(People.by_username, PLAN_ATTRIBUTE)
        statement = plan.statement
        assert plan.shape is Shape.ENTITY and statement is not None
        _, people = await start(make_container)
        await people.by_username("ann")
        await people.by_username("bob")
        assert getattr(People.by_username, PLAN_ATTRIBUTE).statement is statement

    async def test_each_call_issues_one_statement(self, make_container) -> None:
        """A unique finder costs one SELECT; nothing else is sent."""
        container, people = await start(make_container)
        manager = await container.aget(SessionManager)
        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(manager.engine.sync_engine, "before_cursor_execute", record)
        try:
            await people.by_username("ann")
        finally:
            event.remove(manager.engine.sync_engine, "before_cursor_execute", record)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1 and "WHERE username = " in selects[0]


class TestSpellingsAndMetadata:
    def test_finder_keeps_name_signature_and_is_coroutine_function(self) -> None:
        """The compiled finder keeps the declared name, docstring and signature."""
        assert People.by_username.__name__ == "by_username"
        assert str(inspect.signature(People.by_username)) == "(self, username: 'str') -> 'Person | None'"
        assert inspect.iscoroutinefunction(People.by_username)

    def test_alternative_spellings(self) -> None:
        """@query.expr and @query.sql declare the same plans as expr= and sql=, paged=True included."""
        assert getattr(People.page_in, PLAN_ATTRIBUTE).shape is Shape.PAGE
        assert getattr(People.raw_page_in, PLAN_ATTRIBUTE).shape is Shape.PAGE
        assert getattr(People.slice_in, PLAN_ATTRIBUTE).shape is Shape.SLICE


def declaration_error(build: Any) -> DeclarationError:
    with pytest.raises(DeclarationError) as caught:
        build()
    assert isinstance(caught.value, TypeError)
    return caught.value


class TestDeclarationMistakes:
    """Every mistake fails when the class is decorated, naming the method."""

    @pytest.mark.parametrize("annotation", ["set[int]", "frozenset[int]", "Iterable[int]"])
    def test_unordered_in_list_refused(self, annotation: str) -> None:
        """An IN argument the driver cannot index is refused, saying to use list or tuple."""
        source = (
            "@repository(entity=Person)\n"
            "class Repo:\n"
            "    @query(expr='id IN :ids')\n"
            f"    async def find(self, ids: {annotation}) -> list[Person]: ...\n"
        )

        def build() -> None:
            exec(source, {**globals(), "Iterable": collections.abc.Iterable})

        error = declaration_error(build)
        assert error.target.endswith("Repo.find")
        assert "list[...] or tuple[...]" in error.problem

    @pytest.mark.parametrize("returns", ["int", "bool", "Page[Person]"])
    def test_order_by_in_expr_refused_where_it_cannot_apply(self, returns: str) -> None:
        """ORDER BY in expr= fails at declaration for counts, existence checks and pages."""
        source = (
            "@repository(entity=Person)\n"
            "class Repo:\n"
            "    @query(expr='city = :city ORDER BY age')\n"
            f"    async def find(self, city: str{', request: PageRequest' if 'Page' in returns else ''})"
            f" -> {returns}: ...\n"
        )

        def build() -> None:
            exec(source, globals())

        error = declaration_error(build)
        assert "ORDER BY" in error.problem

    def test_unknown_parameter(self) -> None:
        """A :param with no matching argument fails when @query is applied."""

        def build() -> None:
            class Repo:
                @query(expr="username = :usrname")
                async def by_username(self, username: str) -> Person | None: ...

        error = declaration_error(build)
        assert error.target.endswith("Repo.by_username")
        assert ":usrname" in str(error) and "username" in error.problem

    @pytest.mark.parametrize(
        ("options", "fragment"),
        [
            ({"expr": "a = 1", "sql": "SELECT 1"}, "got both"),
            ({}, "got neither"),
            ({"expr": " "}, "non-empty"),
        ],
    )
    def test_expr_and_sql(self, options: dict[str, str], fragment: str) -> None:
        """Exactly one of expr= and sql= is required."""

        def build() -> None:
            class Repo:
                @query(**options)
                async def find(self) -> list[Person]: ...

        error = declaration_error(build)
        assert error.target.endswith("Repo.find") and fragment in str(error)

    def test_bare_query(self) -> None:
        """Bare @query declares nothing and is refused, naming the method."""

        def build() -> None:
            class Repo:
                @query  # type: ignore[arg-type]
                async def find(self) -> list[Person]: ...

        assert declaration_error(build).target.endswith("Repo.find")

    def test_expr_without_entity(self) -> None:
        """expr= in a repository without an entity fails at @repository."""

        def build() -> None:
            @repository
            class NoEntity:
                @query(expr="username = :username")
                async def find(self, username: str) -> list[Person]: ...

        error = declaration_error(build)
        assert error.target.endswith("NoEntity.find") and "no" in error.problem and "entity" in error.problem

    @pytest.mark.parametrize(
        ("annotation", "fragment"),
        [
            ("dict[str, Person]", "unsupported return annotation"),
            ("set[Person]", "unsupported return annotation"),
            ("list[Person] | None", "unsupported return annotation"),
            ("Page[Person] | None", "unsupported return annotation"),
            ("Page", "unsupported return annotation"),
            ("str", "needs a full statement"),
            ("list[Record]", "needs a full statement"),
            ("Pet | None", "selects Person but the method returns Pet"),
        ],
    )
    def test_unsupported_return_annotation(self, annotation: str, fragment: str) -> None:
        """A return annotation the finder cannot produce fails at @repository."""
        namespace: dict[str, Any] = {}
        source = (
            "@repository(entity=Person)\n"
            "class Repo:\n"
            "    @query(expr='city = :city')\n"
            f"    async def find(self, city: str) -> {annotation}: ...\n"
        )

        def build() -> None:
            exec(source, {**globals(), "__name__": __name__}, namespace)

        error = declaration_error(build)
        assert error.target.endswith("Repo.find") and fragment in str(error)

    def test_missing_return_annotation(self) -> None:
        """A finder without a return annotation fails: the annotation decides the result."""

        def build() -> None:
            @repository(entity=Person)
            class Repo:
                @query(expr="city = :city")
                async def find(self, city: str): ...  # type: ignore[no-untyped-def]

        assert "annotate the return type" in str(declaration_error(build))

    def test_unique_with_a_list(self) -> None:
        """unique=True with a list annotation fails."""

        def build() -> None:
            @repository(entity=Person)
            class Repo:
                @query(expr="city = :city", unique=True)
                async def find(self, city: str) -> list[Person]: ...

        assert "unique=True" in declaration_error(build).problem

    def test_page_without_request(self) -> None:
        """Page[...] without a PageRequest argument fails, and so does paged=True on a list."""

        def build() -> None:
            @repository(entity=Person)
            class Repo:
                @query(expr="city = :city")
                async def find(self, city: str) -> Page[Person]: ...

        assert "PageRequest" in declaration_error(build).problem

        def build_paged() -> None:
            @repository(entity=Person)
            class Repo:
                @query(expr="city = :city", paged=True)
                async def find(self, city: str) -> list[Person]: ...

        assert "paged=True" in declaration_error(build_paged).problem

    def test_unused_argument(self) -> None:
        """An argument the query never references fails: it is almost always a typo."""

        def build() -> None:
            @repository(entity=Person)
            class Repo:
                @query(expr="city = :city")
                async def find(self, city: str, age: int) -> list[Person]: ...

        assert "age" in declaration_error(build).problem

    def test_sync_static_and_star_arguments(self) -> None:
        """Sync finders, static methods and *args/**kwargs are refused."""

        def sync() -> None:
            class Repo:
                @query(expr="city = :city")  # type: ignore[arg-type]
                def find(self, city: str) -> list[Person]: ...

        def static() -> None:
            class Repo:
                @query(expr="city = :city")  # type: ignore[arg-type]
                @staticmethod
                async def find(city: str) -> list[Person]: ...

        def star() -> None:
            class Repo:
                @query(expr="city = :city")
                async def find(self, **city: str) -> list[Person]: ...

        assert "async def" in declaration_error(sync).problem
        assert "instance method" in declaration_error(static).problem
        assert "**city" in declaration_error(star).problem

    async def test_finder_outside_repository(self) -> None:
        """A @query method of a class without @repository refuses to run, saying why."""

        class NotARepository:
            @query(sql="SELECT 1")
            async def one(self) -> int: ...

        with pytest.raises(DeclarationError, match="@repository"):
            await NotARepository().one()

    def test_nothing_changed_after_a_mistake(self) -> None:
        """A class whose declaration fails is left as it was, not half-wrapped."""

        class Repo:
            async def save(self) -> None: ...

            @query(expr="city = :city")
            async def find(self, city: str) -> str: ...

        original = Repo.__dict__["save"]
        with pytest.raises(DeclarationError):
            repository(entity=Person)(Repo)
        assert Repo.__dict__["save"] is original
