"""The shop's tables: users, the orders they place, and an audit trail.

Amounts are integers in cents. Table names carry a ``shop_`` prefix only so that the example
can share ``AppBase.metadata`` with the library's test suite, which imports many models into
one process.
"""

import enum
from datetime import UTC, datetime

from sqlalchemy import DateTime, Enum, ForeignKey, String

from pico_sqlalchemy import AppBase, Mapped, mapped_column


def utc_now() -> datetime:
    return datetime.now(UTC)


class OrderStatus(enum.StrEnum):
    # The Enum column stores member names; with names equal to values, SQL text and bound
    # parameters can compare the column with either.
    PLACED = "PLACED"
    CANCELLED = "CANCELLED"


class User(AppBase):
    __tablename__ = "shop_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    credit_limit: Mapped[int]
    """The most the user may owe at once: the sum of their placed (not cancelled) orders."""


class Order(AppBase):
    __tablename__ = "shop_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("shop_users.id"), index=True)
    amount: Mapped[int]
    status: Mapped[OrderStatus] = mapped_column(
        Enum(OrderStatus, native_enum=False, length=20), default=OrderStatus.PLACED
    )
    # SQLite has no time zone type: it stores the UTC value and gives it back naive.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class AuditEntry(AppBase):
    __tablename__ = "shop_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


TABLES = tuple(model.__tablename__ for model in (User, Order, AuditEntry))
"""The shop's tables, in the order they can be created."""
