"""``@query``: declarative finders, compiled once into a :class:`~pico_sqlalchemy.plan.QueryPlan`.

A finder is declared in two steps. ``@query`` runs while the class body executes: it checks
what it can see alone (``expr`` or ``sql``, the ``:param`` names against the signature) and
leaves a :class:`QueryDeclaration` on the function. ``@repository`` then knows the entity and
can resolve the annotations, so it compiles each declaration into a plan: the SQLAlchemy
statement, the parameter binding and the result shape, fixed by the return annotation. A call
only binds its arguments, executes the prepared statement and shapes the rows.

Statements are built without compiling them: compiling (or aliasing an entity) configures
every mapper, which would fail at import time while models are still being defined.
"""

from __future__ import annotations

import collections.abc as abc
import datetime
import decimal
import enum
import functools
import inspect
import re
import types
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import sqlalchemy
from sqlalchemy import Row, bindparam, func, select, text
from sqlalchemy.sql.elements import BindParameter

from .entity import EntityModel
from .exceptions import DeclarationError, describe
from .paging import Page, PageRequest, Paging, Slice
from .plan import PAGED, SINGLE, Binder, QueryPlan, Record, Shape

P = ParamSpec("P")
R = TypeVar("R")

QUERY_ATTRIBUTE = "__pico_query__"
"""Set on the function ``@query`` returns; holds its :class:`QueryDeclaration`."""


# Shapes that execute Core (text) statements rather than ORM selects. SQLAlchemy autoflushes
# before those too only since 2.0.16 (issue 9809); on older versions the finder flushes itself,
# so that it sees what its read-write transaction saved before.
_SQLALCHEMY_VERSION = tuple(int(part) for part in re.findall(r"\d+", sqlalchemy.__version__)[:3])
_CORE_AUTOFLUSH = _SQLALCHEMY_VERSION >= (2, 0, 16)
_CORE = frozenset(
    {Shape.SCALAR, Shape.SCALARS, Shape.TRUTH, Shape.RECORD, Shape.RECORDS, Shape.ROW, Shape.ROWS}
)
SINGLE_SHAPES: dict[str | None, Shape] = {
    "entity": Shape.ENTITY,
    "record": Shape.RECORD,
    "row": Shape.ROW,
    "scalar": Shape.SCALAR,
}
_LIST_SHAPES: dict[str | None, Shape] = {
    "entity": Shape.ENTITIES,
    "record": Shape.RECORDS,
    "row": Shape.ROWS,
    "scalar": Shape.SCALARS,
}
_SCALAR_TYPES = (
    int,
    float,
    str,
    bytes,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
)
# Arguments bound as IN (...): the driver needs a value it can index, so sets and iterables are
# refused at declaration rather than failing on every call.
_SEQUENCES = (list, tuple, abc.Sequence)
_UNORDERED = (set, frozenset, abc.Set, abc.Collection, abc.Iterable)
# The type of an IN list's elements, so that an empty list still compares with the right type.
_ELEMENT_TYPES: dict[Any, type[sqlalchemy.types.TypeEngine[Any]]] = {
    str: sqlalchemy.String,
    int: sqlalchemy.Integer,
    float: sqlalchemy.Float,
    bool: sqlalchemy.Boolean,
    bytes: sqlalchemy.LargeBinary,
    decimal.Decimal: sqlalchemy.Numeric,
    datetime.datetime: sqlalchemy.DateTime,
    datetime.date: sqlalchemy.Date,
    datetime.time: sqlalchemy.Time,
    uuid.UUID: sqlalchemy.Uuid,
}
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
_SHAPES_HELP = (
    "Use the entity (or `Entity | None`), list[Entity], Page[Entity], Slice[Entity], int or bool"
    "; raw sql may also return a scalar type, Record, Row or dict, alone or in a list."
)


@dataclass(frozen=True, slots=True)
class QueryDeclaration:
    """What ``@query`` saw on one method, checked as far as it can be without the entity.

    Attributes:
        function: The decorated method, whose body never runs.
        owner: Its qualified name, for error messages.
        expr: A WHERE clause over the repository's entity, or ``None``.
        sql: A complete statement, or ``None``.
        unique: At most one result is expected.
        paged: The method must return a Page or Slice.
        parameters: Names of the method's parameters after ``self``, in order.
        bind_names: The ``:param`` names of the text, in order of appearance.
    """

    function: Callable[..., Any]
    owner: str
    expr: str | None
    sql: str | None
    unique: bool
    paged: bool
    parameters: tuple[str, ...]
    bind_names: tuple[str, ...]


class QueryDecorator:
    """The ``query`` decorator: ``@query(expr=...)`` or ``@query(sql=...)``, also ``@query.expr/sql(...)``.

    The method's body never runs. Its named parameters bind the ``:param`` placeholders of
    the text, always as bound parameters (an argument annotated as a list expands into
    ``IN (...)``); an argument annotated ``PageRequest`` pages the result instead. ``expr``
    and ``sql`` are SQL, so they name table columns; sorts name entity attributes.

    The return annotation decides the result:

    * ``Entity | None``: one instance or ``None``; ``Entity``: exactly one (else SQLAlchemy's
      ``NoResultFound``). More than one row raises ``MultipleResultsFound``.
    * ``list[Entity]`` (or ``Sequence[Entity]``): a list of instances.
    * ``int`` with ``expr``: a count; ``bool`` with ``expr``: an existence check.
    * ``Page[Entity]`` / ``Slice[Entity]``: one page, with or without a total count.
    * With ``sql`` also: a scalar type (``int``, ``str``, ... or ``X | None``) for the first
      column, ``bool`` for its truth, :class:`~pico_sqlalchemy.Record` (or ``dict``/``Any``)
      for rows read as ``row.name`` and ``row["name"]``, SQLAlchemy's ``Row`` for its rows,
      each alone or in a list.

    Finders run in a REQUIRED read-only scope: they join a caller's transaction, and then see
    what it has written so far, or run in a read-only transaction of their own. A
    ``@transactional`` on the finder replaces that scope.
    """

    def __call__(
        self,
        function: None = None,
        /,
        *,
        expr: str | None = None,
        sql: str | None = None,
        unique: bool = False,
        paged: bool = False,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Declare a finder; see the class docstring.

        Args:
            function: Never given: bare ``@query`` declares no query and is refused (typed
                ``None`` so that type checkers flag it too).
            expr: A WHERE clause over the repository's entity, e.g. ``"username = :username"``.
            sql: A complete statement, e.g. ``"SELECT name FROM users WHERE id = :id"``.
            unique: Return one result or ``None``; more than one raises SQLAlchemy's
                ``MultipleResultsFound``. Needs a single-result annotation, which implies it.
            paged: Insist on a ``Page``/``Slice`` result (the published package's spelling).

        Raises:
            DeclarationError: When the declaration is incomplete or inconsistent; the message
                names the method.
        """
        if function is not None:
            if callable(function):
                raise DeclarationError(
                    describe(function), "@query needs a query: write @query(expr=...) or @query(sql=...)."
                )
            raise DeclarationError(
                "@query", f"pass the text as expr= or sql= (or use @query.expr/@query.sql), got {function!r}."
            )

        def decorate(target: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            return declare(target, expr=expr, sql=sql, unique=unique, paged=paged)

        return decorate

    def expr(
        self, clause: str, /, *, unique: bool = False, paged: bool = False
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Declare a finder by a WHERE clause over the entity; same as ``@query(expr=clause)``."""
        return self(expr=clause, unique=unique, paged=paged)

    def sql(
        self, statement: str, /, *, unique: bool = False, paged: bool = False
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Declare a finder by a complete statement; same as ``@query(sql=statement)``."""
        return self(sql=statement, unique=unique, paged=paged)


query = QueryDecorator()


def declare(
    function: Callable[P, Awaitable[R]], *, expr: str | None, sql: str | None, unique: bool, paged: bool
) -> Callable[P, Awaitable[R]]:
    """Check a finder declaration and return its placeholder until ``@repository`` compiles it."""
    if isinstance(function, staticmethod | classmethod):
        raise DeclarationError(describe(function.__func__), "a @query finder must be an instance method.")
    owner = describe(function)
    if not inspect.iscoroutinefunction(function):
        raise DeclarationError(owner, "a @query finder must be declared with `async def`.")
    if (expr is None) == (sql is None):
        which = "both" if expr is not None else "neither"
        raise DeclarationError(owner, f"@query takes exactly one of expr= and sql=, got {which}.")
    source = expr if expr is not None else sql
    if not isinstance(source, str) or not source.strip():
        raise DeclarationError(owner, f"the query text must be a non-empty string, got {source!r}.")
    for option, value in (("unique", unique), ("paged", paged)):
        if not isinstance(value, bool):
            raise DeclarationError(owner, f"{option} must be True or False, got {value!r}.")
    parameters = _parameters(function, owner)
    bind_names = tuple(text(source).compile().params)
    missing = [name for name in bind_names if name not in parameters]
    if missing:
        raise DeclarationError(
            owner,
            f"the query uses :{', :'.join(missing)} but the method has no such argument; "
            f"its arguments are: {', '.join(parameters) or '(none)'}.",
        )
    declaration = QueryDeclaration(function, owner, expr, sql, unique, paged, parameters, bind_names)

    @functools.wraps(function)
    async def uncompiled(*args: Any, **kwargs: Any) -> Any:
        raise DeclarationError(
            owner, "@query finders only run in a class decorated with @repository; decorate the class."
        )

    setattr(uncompiled, QUERY_ATTRIBUTE, declaration)
    return uncompiled


def _parameters(function: Callable[..., Any], owner: str) -> tuple[str, ...]:
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise DeclarationError(owner, "a @query finder must be an instance method taking `self` first.")
    for parameter in parameters:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise DeclarationError(
                owner,
                f"{'*' if parameter.kind is inspect.Parameter.VAR_POSITIONAL else '**'}{parameter.name} "
                "cannot bind query parameters; name each argument the query uses.",
            )
    return tuple(p.name for p in parameters[1:])


# -- compiling ---------------------------------------------------------------------------------


def compile_query(declaration: QueryDeclaration, model: EntityModel | None, owner_class: type) -> QueryPlan:
    """Turn a declaration into a plan, now that the entity and annotations are known.

    Args:
        declaration: What ``@query`` recorded.
        model: The repository's entity, or ``None`` when it has none.
        owner_class: The repository class, to resolve annotations that name it.

    Raises:
        DeclarationError: For an ``expr`` without an entity, an unsupported or unresolvable
            annotation, an argument the query does not use, or paging declared inconsistently.
    """
    owner = declaration.owner
    if declaration.expr is not None and model is None:
        raise DeclarationError(
            owner,
            "expr= is a WHERE clause over the repository's entity, but there is none; "
            "use @repository(entity=...) or write a full statement with sql=.",
        )
    hints = _hints(declaration.function, owner, owner_class, model)
    if "return" not in hints:
        raise DeclarationError(owner, f"annotate the return type; it decides the result. {_SHAPES_HELP}")
    shape, element, optional = _shape(hints["return"], declaration, model)
    page_parameter = _page_parameter(declaration, hints)
    _check_arguments(declaration, shape, page_parameter)

    ordered_expr = declaration.expr is not None and _ORDER_BY.search(declaration.expr)
    if ordered_expr and shape not in (Shape.ENTITY, Shape.ENTITIES):
        raise DeclarationError(
            owner,
            f"expr= holds ORDER BY, but the method returns {shape.value}, whose statement is built "
            "around the clause; remove it (pages are ordered by the Sort of their PageRequest).",
        )

    clause = text(declaration.expr if declaration.expr is not None else declaration.sql or "")
    expanding = [
        parameter
        for name in declaration.bind_names
        if (parameter := _typed_parameter(name, hints.get(name), owner, model)) is not None
    ]
    if expanding:
        clause = clause.bindparams(*expanding)

    paging: Paging | None = None
    if declaration.expr is not None:
        assert model is not None
        entity = model.entity
        statement: Any = {
            Shape.ENTITY: select(entity).where(clause).limit(2),
            Shape.ENTITIES: select(entity).where(clause),
            Shape.COUNT: select(func.count()).select_from(entity).where(clause),
            Shape.EXISTS: select(select(entity).where(clause).exists()),
        }.get(shape)
        if shape in PAGED:
            paging = Paging.over_entity(model, clause)
    elif shape in (Shape.ENTITY, Shape.ENTITIES):
        statement = select(element).from_statement(clause)
    elif shape in PAGED:
        statement = None
        paging = Paging.over_text(EntityModel.of(element, owner), clause)
    else:
        statement = clause
    return QueryPlan(
        owner=owner,
        shape=shape,
        optional=optional,
        statement=statement,
        paging=paging,
        binder=Binder.of(declaration.function, owner),
        bind_names=declaration.bind_names,
        page_parameter=page_parameter,
        flush=not _CORE_AUTOFLUSH
        and (shape in _CORE or (paging is not None and declaration.sql is not None)),
    )


def _hints(
    function: Callable[..., Any], owner: str, owner_class: type, model: EntityModel | None
) -> dict[str, Any]:
    local = {owner_class.__name__: owner_class}
    if model is not None:
        local[model.entity.__name__] = model.entity
    try:
        return typing.get_type_hints(function, localns=local)
    except Exception as error:  # NameError and friends: report them against the method
        raise DeclarationError(owner, f"cannot resolve its annotations ({error}).") from error


def _shape(
    annotation: Any, declaration: QueryDeclaration, model: EntityModel | None
) -> tuple[Shape, Any, bool]:
    owner = declaration.owner
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        rest = [m for m in members if m is not type(None)]
        if len(rest) != 1 or len(members) != 2:
            raise DeclarationError(owner, f"unsupported return annotation {annotation!r}. {_SHAPES_HELP}")
        annotation, optional = rest[0], True
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    shape: Shape | None = None
    element: Any = annotation
    if origin in (list, abc.Sequence):
        element = arguments[0] if arguments else Any
        shape = _LIST_SHAPES.get(_kind(element))
    elif origin in (Page, Slice) or annotation in (Page, Slice):
        element = arguments[0] if arguments else None
        if _kind(element) == "entity":
            shape = Shape.PAGE if (origin or annotation) is Page else Shape.SLICE
    elif annotation is bool:
        shape = Shape.EXISTS if declaration.expr is not None else Shape.TRUTH
    else:
        kind = _kind(annotation)
        shape = SINGLE_SHAPES.get(kind)
        if shape is Shape.SCALAR and declaration.expr is not None and annotation is int:
            shape = Shape.COUNT
    if shape is None or (optional and shape not in SINGLE):
        shown = _name(annotation, optional)
        raise DeclarationError(owner, f"unsupported return annotation {shown}. {_SHAPES_HELP}")
    if declaration.expr is not None:
        assert model is not None
        if shape in (Shape.SCALAR, Shape.SCALARS, Shape.RECORD, Shape.RECORDS, Shape.ROW, Shape.ROWS):
            raise DeclarationError(
                owner,
                f"expr= selects {model.entity.__name__} entities; {_name(annotation, optional)} "
                "needs a full statement (sql=), or return the entity, a list or page of it, int or bool.",
            )
        if shape in (Shape.ENTITY, Shape.ENTITIES, *PAGED) and not issubclass(model.entity, element):
            raise DeclarationError(
                owner,
                f"expr= selects {model.entity.__name__} but the method returns {element.__name__}; "
                "return the repository's entity or use sql=.",
            )
    if declaration.unique and shape not in SINGLE:
        raise DeclarationError(
            owner,
            f"unique=True returns one result or None, but the method returns {shape.value}; "
            "annotate it as `Entity | None` (or a single Record, Row or scalar).",
        )
    if declaration.paged and shape not in PAGED:
        raise DeclarationError(
            owner, f"paged=True needs a Page[Entity] or Slice[Entity] return, not {shape.value}."
        )
    return shape, element, optional


def _kind(annotation: Any) -> str | None:
    """Classify a result element as "entity", "record", "row" or "scalar"; ``None`` if unsupported."""
    if annotation is Any or annotation in (Record, dict, abc.Mapping):
        return "record"
    if typing.get_origin(annotation) in (dict, abc.Mapping):
        return "record" if typing.get_args(annotation) in ((str, Any), (str, object)) else None
    if annotation is Row or typing.get_origin(annotation) is Row:
        return "row"
    if isinstance(annotation, type):
        if EntityModel.is_entity(annotation):
            return "entity"
        if issubclass(annotation, _SCALAR_TYPES):
            return "scalar"
    return None


def _name(annotation: Any, optional: bool) -> str:
    name = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text_ = name or repr(annotation).replace("typing.", "")
    return f"{text_} | None" if optional else text_


def _page_parameter(declaration: QueryDeclaration, hints: dict[str, Any]) -> str | None:
    owner = declaration.owner
    found = [name for name in declaration.parameters if hints.get(name) is PageRequest]
    if len(found) > 1:
        raise DeclarationError(owner, f"only one PageRequest argument is allowed, got {', '.join(found)}.")
    return found[0] if found else None


def _typed_parameter(
    name: str, hint: Any, owner: str, model: EntityModel | None
) -> BindParameter[Any] | None:
    """Return the bind parameter an argument needs beyond the default, or ``None``.

    A sequence becomes an expanding ``IN`` list, typed by its elements so that an empty list
    still compares with the right type; an enum is typed like the column that stores it.
    """
    origin = typing.get_origin(hint) or hint
    if origin in _UNORDERED:
        raise DeclarationError(
            owner, f"argument {name!r} is a {origin.__name__}; annotate IN lists as list[...] or tuple[...]."
        )
    if origin in _SEQUENCES:
        arguments = typing.get_args(hint)
        return bindparam(name, expanding=True, type_=_value_type(arguments[0], model) if arguments else None)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return bindparam(name, type_=_value_type(hint, model))
    return None


def _value_type(python_type: Any, model: EntityModel | None) -> sqlalchemy.types.TypeEngine[Any] | None:
    if isinstance(python_type, type) and issubclass(python_type, enum.Enum):
        # The column that stores this enum knows whether names or values reach the database.
        for column in model.columns.values() if model is not None else ():
            if getattr(column.type, "enum_class", None) is python_type:
                return column.type  # type: ignore[no-any-return]
        return sqlalchemy.Enum(python_type)
    element_type = _ELEMENT_TYPES.get(python_type)
    return element_type() if element_type is not None else None


def _check_arguments(declaration: QueryDeclaration, shape: Shape, page_parameter: str | None) -> None:
    owner = declaration.owner
    if shape in PAGED and page_parameter is None:
        raise DeclarationError(owner, f"returning {shape.value} needs an argument annotated PageRequest.")
    if shape not in PAGED and page_parameter is not None:
        raise DeclarationError(
            owner, f"argument {page_parameter!r} is a PageRequest, so return Page[Entity] or Slice[Entity]."
        )
    if page_parameter in declaration.bind_names:
        raise DeclarationError(
            owner, f":{page_parameter} is the PageRequest; it pages the query, it is not a value."
        )
    used = {*declaration.bind_names, page_parameter}
    unused = [name for name in declaration.parameters if name not in used]
    if unused:
        raise DeclarationError(
            owner,
            f"argument(s) {', '.join(unused)} are not used by the query; reference them as "
            f":{', :'.join(unused)} or remove them.",
        )
