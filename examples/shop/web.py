"""The HTTP API, and ``create_app``, which builds the container when the application starts."""

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pico_ioc import DictSource, PicoContainer, configuration, init
from sqlalchemy.exc import IntegrityError

from pico_sqlalchemy import PageRequest, Sort, UnknownFieldError

from . import database, repositories, services
from .errors import NotFoundError, ShopError
from .models import OrderStatus
from .schemas import NewOrder, NewUser, OrderOut, PageOut, Problem, UserOut
from .services import OrderService, UserService

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///shop.db"
MAX_PAGE_SIZE = 100

S = TypeVar("S")


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the application; its container starts and stops with it.

    Args:
        database_url: SQLAlchemy URL of an async driver. By default the ``DATABASE_URL``
            environment variable, else ``shop.db`` (SQLite) in the working directory.
    """
    url = database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # init() creates the engine and runs CreateTables before the first request is served.
        container = init(
            modules=[database, repositories, services, "pico_sqlalchemy"],
            config=configuration(DictSource({"database": {"url": url}})),
        )
        app.state.container = container
        try:
            yield
        finally:
            del app.state.container
            await container.cleanup_all_async()  # disposes of the engine

    app = FastAPI(title="pico-sqlalchemy shop", lifespan=lifespan)
    app.include_router(router)
    for error in ERROR_STATUS:
        app.add_exception_handler(error, problem)
    return app


# --- Errors --------------------------------------------------------------------------------

ERROR_STATUS: dict[type[Exception], int] = {
    NotFoundError: 404,
    ShopError: 409,
    # A unique constraint caught what a service's check could not see, e.g. two concurrent
    # registrations of one e-mail address. The transaction was rolled back.
    IntegrityError: 409,
    # A sort field that is not a column of the entity, refused by pico-sqlalchemy before any SQL.
    UnknownFieldError: 400,
}


async def problem(request: Request, error: Exception) -> JSONResponse:
    status = next(ERROR_STATUS[kind] for kind in type(error).__mro__ if kind in ERROR_STATUS)
    # The database's own message may show SQL and values: keep it out of the response.
    detail = "The request conflicts with existing data." if isinstance(error, IntegrityError) else str(error)
    return JSONResponse(Problem(detail=detail).model_dump(), status_code=status)


ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": Problem, "description": "Unknown sort field or malformed sort"},
    404: {"model": Problem, "description": "No such user or order"},
    409: {"model": Problem, "description": "Refused by a business rule"},
}


# --- Dependencies --------------------------------------------------------------------------


def provided(cls: type[S]) -> Callable[[Request], Awaitable[S]]:
    """A FastAPI dependency that returns the container's ``cls`` component."""

    async def resolve(request: Request) -> S:
        container: PicoContainer = request.app.state.container
        return await container.aget(cls)

    return resolve


Users = Annotated[UserService, Depends(provided(UserService))]
Orders = Annotated[OrderService, Depends(provided(OrderService))]


def parse_sort(term: str) -> Sort:
    """Read ``field`` or ``field,asc|desc``; whether the field exists is the repository's to say."""
    field, _, direction = term.partition(",")
    try:
        return Sort(field.strip(), direction.strip() or "ASC")
    except ValueError as error:
        raise HTTPException(400, f"Malformed sort {term!r}: {error}") from None


def page_request(
    page: Annotated[int, Query(ge=0, description="Page number, from 0.")] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    sort: Annotated[
        list[str] | None, Query(description="`field` or `field,desc`; repeat for more terms.")
    ] = None,
) -> PageRequest:
    return PageRequest(page, size, [parse_sort(term) for term in sort or ()])


Paging = Annotated[PageRequest, Depends(page_request)]


# --- Routes --------------------------------------------------------------------------------

router = APIRouter(responses=ERRORS)


@router.post("/users", status_code=201)
async def create_user(body: NewUser, users: Users) -> UserOut:
    user = await users.register(body.email, body.name, body.credit_limit)
    return UserOut.model_validate(user)


@router.get("/users/{user_id}")
async def read_user(user_id: int, users: Users) -> UserOut:
    return UserOut.model_validate(await users.get(user_id))


@router.get("/users/{user_id}/orders")
async def list_user_orders(user_id: int, request: Paging, users: Users) -> PageOut[OrderOut]:
    page = await users.orders_of(user_id, request)
    return PageOut[OrderOut].of(page, OrderOut.model_validate)


@router.post("/users/{user_id}/orders", status_code=201)
async def place_order(user_id: int, body: NewOrder, orders: Orders) -> OrderOut:
    return OrderOut.model_validate(await orders.place(user_id, body.amount))


@router.get("/orders")
async def list_orders(
    request: Paging, orders: Orders, status: OrderStatus | None = None
) -> PageOut[OrderOut]:
    page = await orders.listing(request, status)
    return PageOut[OrderOut].of(page, OrderOut.model_validate)


@router.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: int, orders: Orders) -> OrderOut:
    return OrderOut.model_validate(await orders.cancel(order_id))
