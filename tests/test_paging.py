"""Paging: PageRequest, Sort, Page and Slice, on a 10,000-row table, with unsafe sorts refused."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from sqlalchemy import Integer, String, event, insert

from pico_sqlalchemy import (
    AppBase,
    CrudRepository,
    Mapped,
    Page,
    PageRequest,
    SessionManager,
    Slice,
    Sort,
    UnknownFieldError,
    get_session,
    mapped_column,
    query,
    repository,
    transactional,
)
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]
ROWS = 10_000


class Item(AppBase):
    __tablename__ = "paging_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))
    grp: Mapped[int] = mapped_column("group_no", Integer)


def item_values(index: int) -> dict[str, Any]:
    # A permutation of names and a few groups, so that a sort on grp has many ties.
    return {"id": index + 1, "name": f"n{(index * 7919) % ROWS:05d}", "grp": index % 7}


@repository
class Items(CrudRepository[Item]):
    @transactional
    async def fill(self) -> None:
        await get_session().execute(insert(Item), [item_values(i) for i in range(ROWS)])

    @query(expr="group_no >= :low")
    async def page_from(self, low: int, request: PageRequest) -> Page[Item]: ...

    @query(expr="group_no >= :low")
    async def slice_from(self, low: int, request: PageRequest) -> Slice[Item]: ...

    @query(sql="SELECT * FROM paging_items WHERE group_no >= :low")
    async def raw_page_from(self, low: int, request: PageRequest) -> Page[Item]: ...


EXPECTED = [item_values(i) for i in range(ROWS)]


def expected(sorts: list[Sort], low: int = 0) -> list[int]:
    """The ids in the order the database must return them: the sorts, then the key."""
    rows = [row for row in EXPECTED if row["grp"] >= low]
    rows.sort(key=lambda row: row["id"])
    for sort in reversed(sorts):
        rows.sort(key=lambda row, field=sort.field: row[field], reverse=sort.descending)
    return [row["id"] for row in rows]


@pytest.fixture
async def container(make_container) -> Any:
    return await make_container([MODULE])


@pytest.fixture
async def items(container: Any) -> Items:
    filled = await container.aget(Items)
    await filled.fill()
    return filled


class TestValues:
    def test_sort_normalises_direction(self) -> None:
        """Sort accepts either case and has asc/desc helpers; other directions are refused."""
        assert Sort("name", "desc") == Sort.desc("name") and Sort.desc("name").descending
        assert Sort("name") == Sort.asc("name")
        with pytest.raises(ValueError, match="direction"):
            Sort("name", "DOWN")
        with pytest.raises(ValueError, match="field"):
            Sort("")

    def test_page_request_checks_and_navigates(self) -> None:
        """PageRequest refuses bad numbers, keeps sorts as a tuple and steps both ways."""
        request = PageRequest(2, 10, sorts=[Sort("name", "DESC"), "id"])
        assert request.sorts == (Sort("name", "DESC"), Sort("id"))
        assert request.offset == 20
        assert (request.next().page, request.previous().page, request.first().page) == (3, 1, 0)
        assert PageRequest(0, 5).previous().page == 0
        assert hash(request) == hash(PageRequest(2, 10, (Sort("name", "DESC"), Sort("id"))))
        for page, size in [(-1, 10), (0, 0), (True, 10), (0, 2.5)]:
            with pytest.raises(ValueError, match="PageRequest"):
                PageRequest(page, size)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="sequence"):
            PageRequest(0, 10, sorts=Sort("name"))  # type: ignore[arg-type]

    def test_page_arithmetic(self) -> None:
        """total_pages rounds up; first and last are known; an empty result is one last page 0."""
        page = Page(list(range(10)), PageRequest(0, 10), 25)
        assert (page.total_pages, page.is_first, page.is_last, page.has_next) == (3, True, False, True)
        last = Page([1], PageRequest(2, 10), 21)
        assert (last.total_pages, last.is_first, last.is_last, last.has_previous) == (3, False, True, True)
        empty = Page([], PageRequest(0, 10), 0)
        assert (empty.total_pages, empty.is_first, empty.is_last, len(empty)) == (0, True, True, 0)

    def test_slice_flags(self) -> None:
        """A Slice knows whether more follow, not how many."""
        middle = Slice([1, 2], PageRequest(1, 2), has_next=True)
        assert (middle.is_first, middle.is_last, middle.has_previous, middle.page) == (False, False, True, 1)


class TestPagesOverTenThousandRows:
    @pytest.mark.parametrize(
        "sorts",
        [[Sort("name", "DESC")], [Sort("grp"), Sort("name", "DESC")], [Sort("grp", "DESC")]],
        ids=["name-desc", "grp-then-name-desc", "grp-desc-ties"],
    )
    async def test_walk_forward_and_back(self, items: Items, sorts: list[Sort]) -> None:
        """Walking every page forwards and backwards yields each row once, in sort order."""
        request = PageRequest(0, 700, sorts=sorts)
        forward: list[int] = []
        while True:
            page = await items.find_all(request)
            assert page.total_elements == ROWS and page.total_pages == 15
            assert page.is_first == (request.page == 0) and page.is_last == (request.page == 14)
            forward.extend(item.id for item in page.content)
            if page.is_last:
                break
            request = request.next()
        assert forward == expected(sorts)
        backward: list[list[int]] = []
        while True:
            page = await items.find_all(request)
            backward.insert(0, [item.id for item in page.content])
            if page.is_first:
                break
            request = request.previous()
        assert [i for chunk in backward for i in chunk] == forward
        assert len(backward[-1]) == ROWS - 14 * 700

    async def test_query_page_with_filter(self, items: Items) -> None:
        """A @query page counts and reads only the matching rows, sorted."""
        sorts = [Sort("name")]
        want = expected(sorts, low=5)
        page = await items.page_from(5, PageRequest(3, 100, sorts=sorts))
        assert page.total_elements == len(want)
        assert [item.id for item in page.content] == want[300:400]
        assert all(isinstance(item, Item) for item in page.content)

    async def test_raw_sql_page(self, items: Items) -> None:
        """A page over a full statement maps rows to entities and sorts by entity attributes."""
        sorts = [Sort("grp", "DESC"), Sort("name")]
        want = expected(sorts, low=3)
        last = (len(want) - 1) // 250
        page = await items.raw_page_from(3, PageRequest(last, 250, sorts=sorts))
        assert (page.total_elements, page.is_last, page.total_pages) == (len(want), True, last + 1)
        assert [item.id for item in page.content] == want[last * 250 :]

    async def test_page_past_the_end_is_empty(self, items: Items) -> None:
        """A page beyond the last one has no content but knows the total."""
        page = await items.find_all(PageRequest(500, 100))
        assert page.content == [] and page.total_elements == ROWS and page.is_last

    async def test_slices_without_count(self, items: Items) -> None:
        """Slices walk the table fetching one extra row, and the last one says so."""
        request = PageRequest(0, 1500, sorts=[Sort("name", "DESC")])
        seen: list[int] = []
        while True:
            piece = await items.slice_from(0, request)
            seen.extend(item.id for item in piece.content)
            if piece.is_last:
                break
            request = request.next()
        assert seen == expected([Sort("name", "DESC")]) and request.page == 6


class TestUnsafeSorts:
    @pytest.mark.parametrize(
        "field", ["name; DROP TABLE paging_items", "name DESC", "group_no", "id) --", "__class__"]
    )
    async def test_refused_before_any_sql(self, container: Any, items: Items, peek, field: str) -> None:
        """A sort field that is not a mapped attribute raises before a statement is sent."""
        engine = (await container.aget(SessionManager)).engine.sync_engine
        sent: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            sent.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            for call in (
                lambda r: items.find_all(r),
                lambda r: items.page_from(0, r),
                lambda r: items.slice_from(0, r),
                lambda r: items.raw_page_from(0, r),
            ):
                with pytest.raises(UnknownFieldError) as caught:
                    await call(PageRequest(0, 10, sorts=[Sort(field)]))
                assert caught.value.field == field
                assert caught.value.valid_fields == ("id", "name", "grp")
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert not [s for s in sent if "paging_items" in s]
        assert await peek.scalar("SELECT count(*) FROM paging_items") == ROWS
