"""Request and response bodies of the HTTP API."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from pico_sqlalchemy import Page

from .models import OrderStatus

T = TypeVar("T")


class NewUser(BaseModel):
    email: str = Field(min_length=3, max_length=100, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(min_length=1, max_length=100)
    credit_limit: int = Field(ge=0, description="The most the user may owe at once, in cents.")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    credit_limit: int


class NewOrder(BaseModel):
    amount: int = Field(gt=0, description="In cents.")


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    amount: int
    status: OrderStatus
    created_at: AwareDatetime

    @field_validator("created_at", mode="before")
    @classmethod
    def stored_in_utc(cls, value: Any) -> Any:
        """SQLite gives the stored UTC time back without its zone."""
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class PageOut(BaseModel, Generic[T]):
    """One page of a listing; pages are numbered from 0."""

    content: list[T]
    page: int
    size: int
    total_elements: int
    total_pages: int
    has_next: bool
    has_previous: bool

    @classmethod
    def of(cls, page: Page[Any], convert: Callable[[Any], T]) -> "PageOut[T]":
        return cls(
            content=[convert(item) for item in page.content],
            page=page.page,
            size=page.size,
            total_elements=page.total_elements,
            total_pages=page.total_pages,
            has_next=page.has_next,
            has_previous=page.has_previous,
        )


class Problem(BaseModel):
    """The body of every error response, as FastAPI's own errors have it."""

    detail: str
