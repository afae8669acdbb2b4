"""A compiled finder and its execution: bind the call's arguments, run the statement, shape the rows.

:func:`~pico_sqlalchemy.query.compile_query` builds a :class:`QueryPlan` once per method; this
module holds what then happens on every call, kept free of ``inspect`` and ``typing`` work.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from .manager import get_session
from .paging import PageRequest, Paging


class Record(dict[str, Any]):
    """A row of a raw ``sql`` finder: read a column as ``row["name"]`` or ``row.name``.

    A ``dict`` underneath, so it compares, copies and serialises like one. Columns whose names
    clash with ``dict`` methods (``keys``, ``items``, ...) are read with ``row["keys"]``.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"Record has no column {name!r}; columns: {', '.join(self)}") from None

    def __repr__(self) -> str:
        return f"Record({dict.__repr__(self)})"


class Shape(enum.Enum):
    """What a finder returns, decided by its return annotation."""

    ENTITY = "one entity"
    ENTITIES = "a list of entities"
    COUNT = "a count"
    EXISTS = "an existence check"
    SCALAR = "one scalar"
    SCALARS = "a list of scalars"
    TRUTH = "a scalar read as bool"
    RECORD = "one Record"
    RECORDS = "a list of Records"
    ROW = "one Row"
    ROWS = "a list of Rows"
    PAGE = "a Page"
    SLICE = "a Slice"


SINGLE = frozenset({Shape.ENTITY, Shape.SCALAR, Shape.RECORD, Shape.ROW})
"""Shapes of at most one result."""
PAGED = frozenset({Shape.PAGE, Shape.SLICE})
"""Shapes that take a PageRequest."""


@dataclass(frozen=True, slots=True)
class Binder:
    """Maps a call's arguments to parameter values without ``inspect`` on each call.

    Python's own binding rules, precomputed from the signature: positional and keyword
    arguments, defaults, and a ``TypeError`` naming the method for a bad call.
    """

    owner: str
    positional: tuple[str, ...]
    keyword: frozenset[str]
    defaults: Mapping[str, Any]
    required: frozenset[str]
    all_positional: bool
    """Every parameter can be passed by position, so a call passing all of them needs no checks."""

    @classmethod
    def of(cls, function: Callable[..., Any], owner: str) -> Binder:
        """Read the signature of ``function``, a method whose first parameter is ``self``."""
        parameters = list(inspect.signature(function).parameters.values())[1:]
        positional = tuple(p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY)
        keyword = frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
        required = frozenset(p.name for p in parameters) - defaults.keys()
        return cls(
            owner,
            positional,
            keyword,
            types.MappingProxyType(defaults),
            required,
            len(positional) == len(parameters),
        )

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return every parameter's value for a call; ``args[0]`` is the repository instance.

        Raises:
            TypeError: For too many, missing, unknown or repeated arguments.
        """
        given = len(args) - 1  # args[0] is the repository instance
        if not kwargs and given == len(self.positional) and self.all_positional:
            return dict(zip(self.positional, args[1:], strict=True))
        if given > len(self.positional):
            raise TypeError(f"{self.owner}() takes {len(self.positional)} argument(s) but {given} were given")
        values = dict(self.defaults)
        values.update(zip(self.positional, args[1:], strict=False))
        for name, value in kwargs.items():
            if name not in self.keyword:
                raise TypeError(f"{self.owner}() got an unexpected keyword argument {name!r}")
            if name in self.positional[:given]:
                raise TypeError(f"{self.owner}() got multiple values for argument {name!r}")
            values[name] = value
        if not self.required <= values.keys():
            missing = sorted(self.required - values.keys())
            raise TypeError(f"{self.owner}() missing required argument(s): {', '.join(missing)}")
        return values


Fetch = Callable[["QueryPlan", AsyncSession, dict[str, Any], dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """A compiled finder: the prepared statement, how to bind arguments and shape the result.

    Attributes:
        owner: Qualified name of the finder, for error messages.
        shape: What the call returns.
        optional: A single result may be ``None`` (``Entity | None``); otherwise exactly one.
        statement: The statement to execute, or ``None`` for paged finders.
        paging: The content and count statements of a paged finder.
        binder: Maps the call's arguments to parameter values.
        bind_names: The ``:param`` names the statement binds.
        page_parameter: The argument holding the PageRequest, if any.
        flush: Flush pending changes first (SQLAlchemy < 2.0.16 does not autoflush Core
            statements).
    """

    owner: str
    shape: Shape
    optional: bool
    statement: Any
    paging: Paging | None
    binder: Binder
    bind_names: tuple[str, ...]
    page_parameter: str | None
    flush: bool

    async def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Execute the finder for one call, in the transaction already opened for it."""
        values = self.binder.bind(args, kwargs)
        params = {name: values[name] for name in self.bind_names}
        session = get_session()
        if self.flush:
            await session.flush()
        return await _FETCH[self.shape](self, session, params, values)


async def _entity(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    result = await session.scalars(plan.statement, params)
    return result.one_or_none() if plan.optional else result.one()


async def _entities(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    return list((await session.scalars(plan.statement, params)).all())


async def _scalar(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    result = await session.execute(plan.statement, params)
    return result.scalar_one_or_none() if plan.optional else result.scalar_one()


async def _truth(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    return bool((await session.execute(plan.statement, params)).scalar())


async def _scalars(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    return list((await session.execute(plan.statement, params)).scalars().all())


async def _record(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    result = await session.execute(plan.statement, params)
    row = result.one_or_none() if plan.optional else result.one()
    return None if row is None else Record(row._mapping)


async def _records(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    result = await session.execute(plan.statement, params)
    keys = tuple(result.keys())
    return [Record(zip(keys, row, strict=True)) for row in result]


async def _row(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    result = await session.execute(plan.statement, params)
    return result.one_or_none() if plan.optional else result.one()


async def _rows(plan: QueryPlan, session: AsyncSession, params: dict[str, Any], _: dict[str, Any]) -> Any:
    return list((await session.execute(plan.statement, params)).all())


def _request(plan: QueryPlan, values: dict[str, Any]) -> PageRequest:
    assert plan.page_parameter is not None
    request = values[plan.page_parameter]
    if not isinstance(request, PageRequest):
        raise TypeError(f"{plan.owner}() needs a PageRequest for {plan.page_parameter!r}, got {request!r}")
    return request


async def _page(
    plan: QueryPlan, session: AsyncSession, params: dict[str, Any], values: dict[str, Any]
) -> Any:
    assert plan.paging is not None
    return await plan.paging.page(session, _request(plan, values), params)


async def _slice(
    plan: QueryPlan, session: AsyncSession, params: dict[str, Any], values: dict[str, Any]
) -> Any:
    assert plan.paging is not None
    return await plan.paging.slice(session, _request(plan, values), params)


_FETCH: dict[Shape, Fetch] = {
    Shape.ENTITY: _entity,
    Shape.ENTITIES: _entities,
    Shape.COUNT: _scalar,
    Shape.EXISTS: _scalar,
    Shape.SCALAR: _scalar,
    Shape.SCALARS: _scalars,
    Shape.TRUTH: _truth,
    Shape.RECORD: _record,
    Shape.RECORDS: _records,
    Shape.ROW: _row,
    Shape.ROWS: _rows,
    Shape.PAGE: _page,
    Shape.SLICE: _slice,
}


def finder(plan: QueryPlan, declared: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Return the coroutine function that runs ``plan``, carrying the declared method's metadata."""

    @functools.wraps(declared)
    async def run_query(*args: Any, **kwargs: Any) -> Any:
        return await plan.run(args, kwargs)

    return run_query
