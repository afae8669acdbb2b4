"""Paging: what a caller asks for (:class:`PageRequest`, :class:`Sort`), what it gets back
(:class:`Page`, :class:`Slice`), and the statements that produce them (:class:`Paging`).

Pages are numbered from 0, as in Spring Data. A :class:`Page` costs a ``count(*)`` query on
top of the content query and knows the total; a :class:`Slice` skips the count, fetching one
row more than asked to learn whether another slice follows, which keeps deep tables cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import func, select

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql.elements import TextClause

    from .entity import EntityModel

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sort:
    """One ORDER BY term: an attribute of the entity and a direction.

    The field is checked against the entity's mapped columns before any SQL runs, so a value
    taken from a request parameter can never reach the statement as text.

    Attributes:
        field: Name of a mapped column attribute of the entity, e.g. ``"username"``.
        direction: ``"ASC"`` or ``"DESC"``; lower case is accepted and normalised.
    """

    field: str
    direction: str = "ASC"

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field:
            raise ValueError(f"Sort field must be a non-empty attribute name, got {self.field!r}.")
        direction = self.direction.upper() if isinstance(self.direction, str) else self.direction
        if direction not in ("ASC", "DESC"):
            raise ValueError(f"Sort direction must be 'ASC' or 'DESC', got {self.direction!r}.")
        object.__setattr__(self, "direction", direction)

    @classmethod
    def asc(cls, field: str) -> Sort:
        """Sort by ``field`` in ascending order."""
        return cls(field, "ASC")

    @classmethod
    def desc(cls, field: str) -> Sort:
        """Sort by ``field`` in descending order."""
        return cls(field, "DESC")

    @property
    def descending(self) -> bool:
        """Whether the order is descending."""
        return self.direction == "DESC"


@dataclass(frozen=True, slots=True, init=False)
class PageRequest:
    """Which page to read, how large pages are, and how rows are ordered.

    Args:
        page: Page number, starting at 0.
        size: Rows per page, at least 1.
        sorts: ORDER BY terms, most significant first; a plain string means ascending. The
            entity's primary key is always appended as a tie-breaker, so that rows with equal
            sort values never move between pages.

    Raises:
        ValueError: For a negative page, a size below 1 or a malformed sort.
    """

    page: int
    size: int
    sorts: tuple[Sort, ...]

    def __init__(self, page: int = 0, size: int = 20, sorts: Sequence[Sort | str] = ()) -> None:
        if isinstance(page, bool) or not isinstance(page, int) or page < 0:
            raise ValueError(f"PageRequest page must be an int >= 0, got {page!r}.")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"PageRequest size must be an int >= 1, got {size!r}.")
        if isinstance(sorts, str | Sort):
            raise ValueError("PageRequest sorts takes a sequence, e.g. sorts=[Sort('name', 'DESC')].")
        object.__setattr__(self, "page", page)
        object.__setattr__(self, "size", size)
        # A tuple keeps the request hashable, which lets compiled queries cache ORDER BY clauses.
        object.__setattr__(self, "sorts", tuple(s if isinstance(s, Sort) else Sort(s) for s in sorts))

    @property
    def offset(self) -> int:
        """Number of rows before this page."""
        return self.page * self.size

    def next(self) -> PageRequest:
        """Return the request for the following page, with the same size and sorts."""
        return PageRequest(self.page + 1, self.size, self.sorts)

    def previous(self) -> PageRequest:
        """Return the request for the preceding page (the first page stays the first)."""
        return PageRequest(max(self.page - 1, 0), self.size, self.sorts)

    def first(self) -> PageRequest:
        """Return the request for page 0, with the same size and sorts."""
        return PageRequest(0, self.size, self.sorts)


@dataclass(frozen=True, slots=True)
class _Window(Generic[T]):
    """What a Page and a Slice share: the rows and the request that produced them."""

    content: list[T]
    request: PageRequest

    @property
    def page(self) -> int:
        """Number of this window, starting at 0."""
        return self.request.page

    @property
    def size(self) -> int:
        """Requested number of rows per window."""
        return self.request.size

    @property
    def is_first(self) -> bool:
        """Whether this is window 0."""
        return self.request.page == 0

    @property
    def has_previous(self) -> bool:
        """Whether a window precedes this one."""
        return self.request.page > 0

    def __len__(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True)
class Slice(_Window[T]):
    """A window of results that knows whether more follow, without counting them.

    Attributes:
        content: The rows of this slice, at most ``request.size``.
        request: The request that produced it.
        has_next: Whether at least one row follows this slice.
    """

    has_next: bool

    @property
    def is_last(self) -> bool:
        """Whether no row follows this slice."""
        return not self.has_next


@dataclass(frozen=True, slots=True)
class Page(_Window[T]):
    """One page of results and the total they were taken from.

    Attributes:
        content: The rows of this page, at most ``request.size``.
        request: The request that produced it.
        total_elements: Rows matching the query across all pages.
    """

    total_elements: int

    @property
    def total_pages(self) -> int:
        """Number of pages; 0 when nothing matched."""
        return -(-self.total_elements // self.request.size)

    @property
    def is_last(self) -> bool:
        """Whether no page follows this one."""
        return self.request.page >= self.total_pages - 1

    @property
    def has_next(self) -> bool:
        """Whether a page follows this one."""
        return not self.is_last


@dataclass(frozen=True, slots=True)
class Paging:
    """The statements of a paged read: content without ORDER BY/LIMIT, and its count.

    ORDER BY clauses are cached per distinct tuple of sorts, validated on first use, so a call
    only adds LIMIT and OFFSET.
    """

    model: EntityModel
    content: Any
    count: Any
    columns: Mapping[str, Any]
    wrap: bool
    _ordered: dict[tuple[Sort, ...], Any]

    @classmethod
    def over_entity(cls, model: EntityModel, where: TextClause | None = None) -> Paging:
        """Page ``SELECT entity [WHERE <expr>]``; with no sorts, rows come in primary key order."""
        content, count = model.select_all, model.count
        if where is not None:
            content, count = content.where(where), count.where(where)
        return cls(model, content, count, model.columns, False, {})

    @classmethod
    def over_text(cls, model: EntityModel, statement: TextClause) -> Paging:
        """Page a full statement by wrapping it in a subquery; sorts refer to the entity's columns."""
        subquery = statement.columns(*model.table.columns).subquery("q")
        columns = {name: subquery.corresponding_column(column) for name, column in model.columns.items()}
        count = select(func.count()).select_from(subquery)
        return cls(model, select(*subquery.c), count, columns, True, {})

    def ordered(self, sorts: tuple[Sort, ...]) -> Any:
        """Return the content statement ordered by ``sorts`` (checked on first use, then cached).

        Raises:
            UnknownFieldError: For a sort field that is not a mapped column of the entity.
        """
        statement = self._ordered.get(sorts)
        if statement is None:
            # A text statement keeps its own order when no sort is asked for.
            terms = self.model.order_by(sorts, self.columns, tie_break=bool(sorts) or not self.wrap)
            statement = self.content.order_by(*terms)
            if len(self._ordered) >= 256:  # sorts may come from requests; keep the cache bounded
                self._ordered.clear()
            self._ordered[sorts] = statement
        return statement

    def window(self, ordered: Any, limit: int, offset: int) -> Any:
        """Add LIMIT/OFFSET; rows of a text statement are mapped back to entities."""
        statement = ordered.limit(limit).offset(offset)
        return select(self.model.entity).from_statement(statement) if self.wrap else statement

    async def page(self, session: AsyncSession, request: PageRequest, params: Mapping[str, Any]) -> Page[Any]:
        """Count the matches, then read the requested page (skipped when it is past the end)."""
        ordered = self.ordered(request.sorts)  # refuses unknown sort fields before any SQL
        total = (await session.execute(self.count, params)).scalar_one()
        content: list[Any] = []
        if total > request.offset:
            window = self.window(ordered, request.size, request.offset)
            content = list((await session.scalars(window, params)).all())
        return Page(content, request, total)

    async def slice(
        self, session: AsyncSession, request: PageRequest, params: Mapping[str, Any]
    ) -> Slice[Any]:
        """Read one row more than the page size, to learn whether another slice follows."""
        window = self.window(self.ordered(request.sorts), request.size + 1, request.offset)
        content = list((await session.scalars(window, params)).all())
        return Slice(content[: request.size], request, len(content) > request.size)
