"""Data access: one repository per table, with declarative finders."""

# The body of a @query finder never runs: pico-sqlalchemy replaces it with the compiled query.
# mypy --strict would still want a return statement in `...` bodies that return a value.
# mypy: disable-error-code="empty-body"

from pico_sqlalchemy import (
    CrudRepository,
    Page,
    PageRequest,
    Propagation,
    get_session,
    query,
    repository,
    transactional,
)

from .models import AuditEntry, Order, OrderStatus, User


@repository
class UserRepository(CrudRepository[User]):
    @query(expr="email = :email")
    async def find_by_email(self, email: str) -> User | None: ...

    @transactional(propagation=Propagation.MANDATORY)
    async def lock(self, user_id: int) -> User | None:
        """Load a user and lock its row until the caller's transaction ends.

        MANDATORY: a lock taken in a transaction of its own would be released at once.
        PostgreSQL runs ``SELECT ... FOR UPDATE``; SQLite has no row locks, but its writers
        already take turns.
        """
        return await get_session().get(User, user_id, with_for_update=True)


@repository
class OrderRepository(CrudRepository[Order]):
    @query(expr="user_id = :user_id")
    async def find_by_user(self, user_id: int, request: PageRequest) -> Page[Order]: ...

    @query(expr="status = :status")
    async def find_by_status(self, status: OrderStatus, request: PageRequest) -> Page[Order]: ...

    @query(
        sql="SELECT coalesce(sum(amount), 0) FROM shop_orders WHERE user_id = :user_id AND status = 'PLACED'"
    )
    async def open_balance(self, user_id: int) -> int:
        """What the user owes: the sum of their placed orders, this transaction's included."""

    @transactional(propagation=Propagation.MANDATORY)
    async def lock(self, order_id: int) -> Order | None:
        """Load an order and lock its row until the caller's transaction ends."""
        return await get_session().get(Order, order_id, with_for_update=True)


@repository
class AuditRepository(CrudRepository[AuditEntry]):
    pass
