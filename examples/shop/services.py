"""Business logic: each public method is one transaction (or joins the caller's)."""

from pico_ioc import component

from pico_sqlalchemy import Page, PageRequest, Propagation, transactional

from .errors import CreditLimitExceededError, EmailTakenError, NotFoundError, OrderNotCancellableError
from .models import AuditEntry, Order, OrderStatus, User
from .repositories import AuditRepository, OrderRepository, UserRepository


@component
class AuditTrail:
    def __init__(self, entries: AuditRepository) -> None:
        self.entries = entries

    @transactional(propagation=Propagation.REQUIRES_NEW)
    async def record(self, action: str, detail: str) -> None:
        """Commit an entry in a transaction of its own: it stays even if the caller's rolls back.

        On SQLite, which has one writer at a time, call it before the caller's transaction has
        run a statement: a caller holding the write lock would make this wait, then fail.
        """
        await self.entries.save(AuditEntry(action=action, detail=detail))


@component
class UserService:
    def __init__(self, users: UserRepository, orders: OrderRepository) -> None:
        self.users = users
        self.orders = orders

    @transactional
    async def register(self, email: str, name: str, credit_limit: int) -> User:
        """Create a user.

        Raises:
            EmailTakenError: When the address is in use. (Two concurrent registrations of one
                address both pass this check; the unique constraint stops the second, whose
                ``IntegrityError`` the web layer also answers with 409.)
        """
        if await self.users.find_by_email(email) is not None:
            raise EmailTakenError(email)
        return await self.users.save(User(email=email, name=name, credit_limit=credit_limit))

    @transactional(read_only=True)
    async def get(self, user_id: int) -> User:
        """Return the user. Raises ``NotFoundError``."""
        user = await self.users.get(user_id)
        if user is None:
            raise NotFoundError("User", user_id)
        return user

    @transactional(read_only=True)
    async def orders_of(self, user_id: int, request: PageRequest) -> Page[Order]:
        """Return one page of the user's orders. Raises ``NotFoundError`` for an unknown user."""
        if not await self.users.exists(user_id):
            raise NotFoundError("User", user_id)
        return await self.orders.find_by_user(user_id, request)


@component
class OrderService:
    def __init__(self, users: UserRepository, orders: OrderRepository, audit: AuditTrail) -> None:
        self.users = users
        self.orders = orders
        self.audit = audit

    @transactional
    async def place(self, user_id: int, amount: int) -> Order:
        """Place an order, provided the user's balance stays within their credit limit.

        The order is saved before the limit is checked, so the check counts it; when the limit
        is exceeded the error rolls that INSERT back and nothing of the order remains. The audit
        entry, committed on its own, records the attempt either way.

        Raises:
            NotFoundError: For an unknown user.
            CreditLimitExceededError: When the order does not fit the user's credit limit.
        """
        # First, before this transaction runs any statement (see AuditTrail.record).
        await self.audit.record("order requested", f"user {user_id} asks for {amount}")
        # The lock makes concurrent orders of one user take turns, so that each sees the
        # balance the previous one left.
        user = await self.users.lock(user_id)
        if user is None:
            raise NotFoundError("User", user_id)
        order = await self.orders.save(Order(user_id=user.id, amount=amount))
        balance = await self.orders.open_balance(user.id)
        if balance > user.credit_limit:
            raise CreditLimitExceededError(user.id, amount, balance, user.credit_limit)
        return order

    @transactional
    async def cancel(self, order_id: int) -> Order:
        """Cancel a placed order, which frees its amount of the user's credit.

        Raises:
            NotFoundError: For an unknown order.
            OrderNotCancellableError: When the order is cancelled already.
        """
        order = await self.orders.lock(order_id)
        if order is None:
            raise NotFoundError("Order", order_id)
        if order.status is not OrderStatus.PLACED:
            raise OrderNotCancellableError(order.id, order.status)
        order.status = OrderStatus.CANCELLED
        return order

    @transactional(read_only=True)
    async def listing(self, request: PageRequest, status: OrderStatus | None = None) -> Page[Order]:
        """Return one page of all orders, or of those with ``status``."""
        if status is None:
            return await self.orders.find_all(request)
        return await self.orders.find_by_status(status, request)
