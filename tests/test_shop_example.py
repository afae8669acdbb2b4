"""examples/shop, the FastAPI shop, driven over HTTP on SQLite and PostgreSQL.

Each test starts the application with its lifespan (which builds the container and creates the
tables) on an empty database of its own, talks to it through httpx, and reads what was really
committed from a second connection (``peek``). When a test ends, no connection may still be
checked out of the application's pool.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from pico_sqlalchemy import SessionManager

if TYPE_CHECKING:
    from conftest import Peek

# `python -m pytest` from the repository root can import `examples`; plain `pytest` cannot.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.shop import create_app  # noqa: E402 - needs the path above

Json = dict[str, Any]


@dataclass
class Shop:
    """The running application and an HTTP client bound to it."""

    app: FastAPI
    http: httpx.AsyncClient

    async def user(
        self, email: str = "ann@example.com", credit_limit: int = 1_000, name: str = "Ann"
    ) -> Json:
        response = await self.http.post(
            "/users", json={"email": email, "name": name, "credit_limit": credit_limit}
        )
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    async def order(self, user_id: int, amount: int) -> httpx.Response:
        return await self.http.post(f"/users/{user_id}/orders", json={"amount": amount})

    async def placed(self, user_id: int, amount: int) -> Json:
        response = await self.order(user_id, amount)
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    async def orders(self, path: str = "/orders", **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params)

    async def checked_out(self) -> int:
        manager = await self.app.state.container.aget(SessionManager)
        pool = manager.engine.pool
        return pool.checkedout() if hasattr(pool, "checkedout") else 0


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Shop]:
    """Run ``app``'s lifespan around a client; on the way out, check the pool."""
    async with (
        LifespanManager(app) as lifespan,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=lifespan.app), base_url="http://test") as http,
    ):
        shop = Shop(app, http)
        yield shop
        assert await shop.checked_out() == 0, "a connection is still checked out after the test"


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[Shop]:
    """The shop on this test's empty database."""
    async with running(create_app(database_url)) as running_shop:
        yield running_shop


def instant(order: Json) -> datetime:
    return datetime.fromisoformat(order["created_at"])


def comparable(order: Json) -> Json:
    """An order as JSON, with its time read as an instant (backends spell the zone differently)."""
    return {**order, "created_at": instant(order)}


async def read_all_pages(shop: Shop, path: str, size: int, *sort: str) -> list[Json]:
    """Follow ``has_next`` from page 0 and return every page body."""
    pages: list[Json] = []
    while not pages or pages[-1]["has_next"]:
        response = await shop.orders(path, page=len(pages), size=size, sort=list(sort))
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages


class TestUsers:
    async def test_registered_user_is_committed(self, shop: Shop, peek: Peek) -> None:
        """POST /users answers 201 with the user, whose row another connection then sees."""
        user = await shop.user("ann@example.com", 500, "Ann")
        assert user == {"id": user["id"], "email": "ann@example.com", "name": "Ann", "credit_limit": 500}
        assert await peek.rows("SELECT id, email, name, credit_limit FROM shop_users") == [
            (user["id"], "ann@example.com", "Ann", 500)
        ]
        response = await shop.http.get(f"/users/{user['id']}")
        assert response.status_code == 200
        assert response.json() == user

    async def test_unknown_user_is_404(self, shop: Shop) -> None:
        """GET /users/{id} of a user that does not exist answers 404 with a detail."""
        response = await shop.http.get("/users/999")
        assert response.status_code == 404
        assert response.json() == {"detail": "User 999 does not exist."}

    async def test_taken_email_is_409_and_keeps_the_first_user(self, shop: Shop, peek: Peek) -> None:
        """A second user with the same e-mail is refused with 409; only the first row exists."""
        first = await shop.user("ann@example.com", name="Ann")
        response = await shop.http.post(
            "/users", json={"email": "ann@example.com", "name": "Other", "credit_limit": 1}
        )
        assert response.status_code == 409
        assert "ann@example.com" in response.json()["detail"]
        assert await peek.rows("SELECT id, name FROM shop_users") == [(first["id"], "Ann")]

    async def test_concurrent_registrations_of_one_email_make_one_user(self, shop: Shop, peek: Peek) -> None:
        """Five simultaneous registrations of one address: one 201, four 409, one row."""
        responses = await asyncio.gather(
            *(
                shop.http.post(
                    "/users", json={"email": "ann@example.com", "name": f"n{i}", "credit_limit": 1}
                )
                for i in range(5)
            )
        )
        assert sorted(response.status_code for response in responses) == [201, 409, 409, 409, 409]
        assert await peek.scalar("SELECT count(*) FROM shop_users") == 1

    @pytest.mark.parametrize(
        "body",
        [
            {"email": "not an address", "name": "Ann", "credit_limit": 1},
            {"email": "ann@example.com", "name": "", "credit_limit": 1},
            {"email": "ann@example.com", "name": "Ann", "credit_limit": -1},
            {"email": "ann@example.com", "name": "Ann"},
        ],
        ids=["email", "name", "credit_limit", "missing"],
    )
    async def test_invalid_user_is_422_and_writes_nothing(self, shop: Shop, peek: Peek, body: Json) -> None:
        """A body that fails validation is answered 422 before any service runs."""
        response = await shop.http.post("/users", json=body)
        assert response.status_code == 422
        assert await peek.scalar("SELECT count(*) FROM shop_users") == 0


class TestPlacingOrders:
    async def test_order_within_the_limit_is_committed(self, shop: Shop, peek: Peek) -> None:
        """An order that fits the credit limit is answered 201 and committed, with its audit entry."""
        user = await shop.user(credit_limit=500)
        order = await shop.placed(user["id"], 300)
        assert order["user_id"] == user["id"]
        assert order["amount"] == 300
        assert order["status"] == "PLACED"
        assert await peek.rows("SELECT id, user_id, amount, status FROM shop_orders") == [
            (order["id"], user["id"], 300, "PLACED")
        ]
        assert await peek.column("SELECT action FROM shop_audit") == ["order requested"]

    async def test_order_over_the_limit_is_409_and_rolled_back(self, shop: Shop, peek: Peek) -> None:
        """An order that would exceed the limit is refused with 409; its INSERT is rolled back.

        The service saves (and flushes) the order before it checks the balance, so the refusal
        really undoes a write. The audit entry, committed in a REQUIRES_NEW transaction,
        survives the rollback.
        """
        user = await shop.user(credit_limit=500)
        first = await shop.placed(user["id"], 300)
        response = await shop.order(user["id"], 201)
        assert response.status_code == 409
        assert response.json() == {
            "detail": f"An order of 201 would bring the balance of user {user['id']} to 501, "
            "above their credit limit of 500."
        }
        assert await peek.rows("SELECT id, amount FROM shop_orders") == [(first["id"], 300)]
        assert await peek.column("SELECT detail FROM shop_audit ORDER BY id") == [
            f"user {user['id']} asks for 300",
            f"user {user['id']} asks for 201",
        ]
        assert (await shop.order(user["id"], 200)).status_code == 201  # exactly up to the limit

    async def test_order_of_unknown_user_is_404_and_writes_no_order(self, shop: Shop, peek: Peek) -> None:
        """Ordering for a user that does not exist answers 404; no order row is written."""
        response = await shop.order(42, 100)
        assert response.status_code == 404
        assert response.json() == {"detail": "User 42 does not exist."}
        assert await peek.scalar("SELECT count(*) FROM shop_orders") == 0

    @pytest.mark.parametrize("amount", [0, -5, "lots"])
    async def test_invalid_amount_is_422(self, shop: Shop, peek: Peek, amount: Any) -> None:
        """A non-positive or non-numeric amount is answered 422 and nothing is written."""
        user = await shop.user()
        response = await shop.http.post(f"/users/{user['id']}/orders", json={"amount": amount})
        assert response.status_code == 422
        assert await peek.scalar("SELECT count(*) FROM shop_orders") == 0
        assert await peek.scalar("SELECT count(*) FROM shop_audit") == 0

    async def test_cancelling_frees_credit(self, shop: Shop, peek: Peek) -> None:
        """A cancelled order no longer counts toward the limit; cancelling twice is a 409."""
        user = await shop.user(credit_limit=500)
        order = await shop.placed(user["id"], 500)
        assert (await shop.order(user["id"], 1)).status_code == 409

        response = await shop.http.post(f"/orders/{order['id']}/cancel")
        assert response.status_code == 200
        assert response.json() == {**order, "status": "CANCELLED"}
        second = await shop.placed(user["id"], 500)

        again = await shop.http.post(f"/orders/{order['id']}/cancel")
        assert again.status_code == 409
        assert again.json() == {
            "detail": f"Order {order['id']} is cancelled; only a placed order can be cancelled."
        }
        assert await peek.rows("SELECT id, status FROM shop_orders ORDER BY id") == [
            (order["id"], "CANCELLED"),
            (second["id"], "PLACED"),
        ]

    async def test_cancelling_an_unknown_order_is_404(self, shop: Shop) -> None:
        """POST /orders/{id}/cancel for an order that does not exist answers 404."""
        response = await shop.http.post("/orders/7/cancel")
        assert response.status_code == 404
        assert response.json() == {"detail": "Order 7 does not exist."}

    async def test_concurrent_orders_stay_within_the_limit(self, shop: Shop, peek: Peek) -> None:
        """Ten simultaneous orders of 100 against a limit of 500: five are placed, five refused.

        The user's row lock (SQLite: its one writer at a time) makes the orders take turns, so
        each one's balance check sees the orders committed before it.
        """
        user = await shop.user(credit_limit=500)
        responses = await asyncio.gather(*(shop.order(user["id"], 100) for _ in range(10)))
        assert sorted(response.status_code for response in responses) == [201] * 5 + [409] * 5
        assert await peek.scalar("SELECT sum(amount) FROM shop_orders") == 500
        assert await peek.scalar("SELECT count(*) FROM shop_audit") == 10


class TestListing:
    @pytest.fixture
    async def orders(self, shop: Shop) -> list[Json]:
        """25 orders by one user, with amounts that repeat, in the order they were placed."""
        user = await shop.user(credit_limit=1_000_000)
        return [await shop.placed(user["id"], 100 * (1 + index % 4)) for index in range(25)]

    async def test_pages_of_25_orders_newest_first(self, shop: Shop, orders: list[Json]) -> None:
        """sort=created_at,desc in pages of 10: three pages, 10 + 10 + 5, newest first, none twice."""
        pages = await read_all_pages(shop, "/orders", 10, "created_at,desc")
        assert [len(page["content"]) for page in pages] == [10, 10, 5]
        assert [(page["page"], page["size"]) for page in pages] == [(0, 10), (1, 10), (2, 10)]
        assert {(page["total_elements"], page["total_pages"]) for page in pages} == {(25, 3)}
        assert [page["has_previous"] for page in pages] == [False, True, True]
        assert [page["has_next"] for page in pages] == [True, True, False]
        # Newest first; the primary key breaks a tie between equal times.
        expected = sorted(sorted(orders, key=lambda order: order["id"]), key=instant, reverse=True)
        listed = [order for page in pages for order in page["content"]]
        assert [comparable(order) for order in listed] == [comparable(order) for order in expected]

    async def test_two_sort_terms(self, shop: Shop, orders: list[Json]) -> None:
        """sort=amount,desc&sort=id orders by amount, then by id, across pages of 7."""
        pages = await read_all_pages(shop, "/orders", 7, "amount,desc", "id")
        listed = [order["id"] for page in pages for order in page["content"]]
        expected = sorted(orders, key=lambda order: (-order["amount"], order["id"]))
        assert listed == [order["id"] for order in expected]

    async def test_without_sort_orders_come_by_id(self, shop: Shop, orders: list[Json]) -> None:
        """With no sort the listing is in primary key order (the defaults: page 0, size 20)."""
        response = await shop.orders()
        body = response.json()
        assert (body["page"], body["size"], body["total_elements"], body["total_pages"]) == (0, 20, 25, 2)
        assert [order["id"] for order in body["content"]] == [order["id"] for order in orders[:20]]

    async def test_page_past_the_end_is_empty(self, shop: Shop, orders: list[Json]) -> None:
        """A page beyond the last one is empty but still tells the totals."""
        body = (await shop.orders(page=5, size=10)).json()
        assert body["content"] == []
        assert (body["total_elements"], body["total_pages"], body["has_next"]) == (25, 3, False)

    async def test_empty_listing(self, shop: Shop) -> None:
        """With no order at all: one empty page 0 and zero pages in total."""
        body = (await shop.orders()).json()
        assert (body["content"], body["total_elements"], body["total_pages"]) == ([], 0, 0)

    async def test_user_orders_are_only_theirs(self, shop: Shop, orders: list[Json]) -> None:
        """GET /users/{id}/orders pages through that user's orders and nobody else's."""
        other = await shop.user("bob@example.com", credit_limit=10_000, name="Bob")
        theirs = [await shop.placed(other["id"], 10 * (index + 1)) for index in range(6)]
        pages = await read_all_pages(shop, f"/users/{other['id']}/orders", 4, "amount,desc")
        assert [(page["total_elements"], page["total_pages"]) for page in pages] == [(6, 2), (6, 2)]
        listed = [order["id"] for page in pages for order in page["content"]]
        assert listed == [order["id"] for order in reversed(theirs)]

    async def test_orders_of_unknown_user_is_404(self, shop: Shop) -> None:
        """GET /users/{id}/orders for a user that does not exist answers 404, not an empty page."""
        response = await shop.orders("/users/31/orders")
        assert response.status_code == 404
        assert response.json() == {"detail": "User 31 does not exist."}

    async def test_status_filter(self, shop: Shop, orders: list[Json]) -> None:
        """GET /orders?status=CANCELLED lists only cancelled orders, counted as such."""
        for order in orders[:3]:
            assert (await shop.http.post(f"/orders/{order['id']}/cancel")).status_code == 200
        cancelled = (await shop.orders(status="CANCELLED", sort="id,desc")).json()
        assert [order["id"] for order in cancelled["content"]] == [order["id"] for order in orders[2::-1]]
        assert cancelled["total_elements"] == 3
        assert (await shop.orders(status="PLACED")).json()["total_elements"] == 22
        assert (await shop.orders(status="LOST")).status_code == 422

    @pytest.mark.parametrize(
        "sort",
        [
            "id; DROP TABLE shop_orders",
            "amount) DESC; DELETE FROM shop_orders --",
            "(SELECT 1)",
            "amount desc",
            "email",
            "__class__",
            "user",
        ],
    )
    async def test_unknown_sort_field_is_400_and_runs_no_sql(
        self, shop: Shop, peek: Peek, orders: list[Json], sort: str
    ) -> None:
        """A sort field that is not a column of Order is refused with 400; the table is intact."""
        response = await shop.orders(sort=sort)
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert detail.startswith(f"Cannot sort by {sort!r}: it is not a mapped column of Order.")
        assert detail.endswith("Valid fields: id, user_id, amount, status, created_at.")
        assert await peek.scalar("SELECT count(*) FROM shop_orders") == 25
        assert (await shop.orders()).status_code == 200

    async def test_unknown_sort_field_of_user_orders_is_400(self, shop: Shop, orders: list[Json]) -> None:
        """The paged @query finder refuses an unknown sort field too."""
        response = await shop.orders(f"/users/{orders[0]['user_id']}/orders", sort="1=1")
        assert response.status_code == 400
        assert response.json()["detail"].startswith("Cannot sort by '1=1'")

    @pytest.mark.parametrize("sort", ["amount,sideways", ",desc", "amount,desc;--"])
    async def test_malformed_sort_is_400(self, shop: Shop, sort: str) -> None:
        """A sort whose direction is not asc/desc, or that names no field, is refused with 400."""
        response = await shop.orders(sort=sort)
        assert response.status_code == 400
        assert response.json()["detail"].startswith(f"Malformed sort {sort!r}")

    @pytest.mark.parametrize(
        "params",
        [{"page": -1}, {"size": 0}, {"size": 101}, {"page": "first"}],
        ids=["negative-page", "zero-size", "size-over-100", "page-not-a-number"],
    )
    async def test_bad_paging_is_422(self, shop: Shop, params: Json) -> None:
        """Paging parameters out of range are refused by validation with 422."""
        assert (await shop.orders(**params)).status_code == 422


class TestApplication:
    async def test_database_url_from_the_environment(
        self, database_url: str, peek: Peek, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """create_app() without an argument uses DATABASE_URL."""
        monkeypatch.setenv("DATABASE_URL", database_url)
        async with running(create_app()) as shop:
            await shop.user("env@example.com")
        assert await peek.column("SELECT email FROM shop_users") == ["env@example.com"]

    async def test_data_outlives_a_restart(self, database_url: str) -> None:
        """A second start on the same database keeps the tables and rows of the first."""
        app = create_app(database_url)
        async with running(app) as shop:
            user = await shop.user()
            await shop.placed(user["id"], 10)
        assert not hasattr(app.state, "container")  # the shutdown cleaned the container up
        async with running(app) as shop:
            assert (await shop.http.get(f"/users/{user['id']}")).json() == user
            assert (await shop.orders()).json()["total_elements"] == 1

    async def test_openapi_describes_the_api(self, shop: Shop) -> None:
        """The OpenAPI document lists every route, with the page schema of the listing."""
        response = await shop.http.get("/openapi.json")
        assert response.status_code == 200
        document = response.json()
        assert sorted(document["paths"]) == [
            "/orders",
            "/orders/{order_id}/cancel",
            "/users",
            "/users/{user_id}",
            "/users/{user_id}/orders",
        ]
        listing = document["paths"]["/orders"]["get"]
        assert {item["name"] for item in listing["parameters"]} == {"page", "size", "sort", "status"}
        assert set(listing["responses"]) >= {"200", "400", "422"}
