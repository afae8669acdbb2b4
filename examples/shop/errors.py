"""The shop's business errors; the web layer turns each into an HTTP status."""


class ShopError(Exception):
    """A request the shop refuses for a business reason (HTTP 409 unless a subclass says otherwise)."""


class NotFoundError(ShopError, LookupError):
    """The user or order does not exist (HTTP 404)."""

    def __init__(self, kind: str, id: int) -> None:
        super().__init__(f"{kind} {id} does not exist.")
        self.kind = kind
        self.id = id


class EmailTakenError(ShopError):
    """Another user already has this e-mail address."""

    def __init__(self, email: str) -> None:
        super().__init__(f"A user with e-mail {email!r} already exists.")
        self.email = email


class CreditLimitExceededError(ShopError):
    """The order would take what the user owes above their credit limit."""

    def __init__(self, user_id: int, amount: int, balance: int, limit: int) -> None:
        super().__init__(
            f"An order of {amount} would bring the balance of user {user_id} to {balance}, "
            f"above their credit limit of {limit}."
        )
        self.user_id = user_id
        self.amount = amount
        self.balance = balance
        self.limit = limit


class OrderNotCancellableError(ShopError):
    """Only a placed order can be cancelled."""

    def __init__(self, order_id: int, status: str) -> None:
        super().__init__(f"Order {order_id} is {status.lower()}; only a placed order can be cancelled.")
        self.order_id = order_id
        self.status = status
