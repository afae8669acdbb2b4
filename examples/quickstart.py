"""The README's example: a bank with an audit log, on SQLite or PostgreSQL.

Run it as ``python examples/quickstart.py``. It uses an in-memory SQLite database unless
``DATABASE_URL`` names another one, for example
``DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test``.
"""

import asyncio
import os

from pico_ioc import DictSource, component, configuration, init
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pico_sqlalchemy import (
    AppBase,
    DatabaseConfigurer,
    Mapped,
    Propagation,
    get_session,
    mapped_column,
    transactional,
)


class Account(AppBase):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(50), unique=True)
    balance: Mapped[int]


class AuditEntry(AppBase):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str] = mapped_column(String(200))


@component
class CreateTables(DatabaseConfigurer):
    """Runs once when the container starts, before any service is called."""

    def __init__(self, base: AppBase) -> None:
        self.base = base

    async def configure_database(self, engine: AsyncEngine) -> None:
        async with engine.begin() as connection:
            # A demo starts from empty tables; an application would run its migrations here.
            await connection.run_sync(self.base.metadata.drop_all)
            await connection.run_sync(self.base.metadata.create_all)


@component
class AuditLog:
    @transactional(propagation=Propagation.REQUIRES_NEW)
    async def record(self, message: str) -> None:
        """Commits in a transaction of its own, whatever happens to the caller's."""
        get_session().add(AuditEntry(message=message))

    @transactional(read_only=True)
    async def size(self) -> int:
        return await get_session().scalar(select(func.count()).select_from(AuditEntry)) or 0


@component
class Bank:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    @transactional
    async def open_account(self, owner: str, deposit: int) -> None:
        get_session().add(Account(owner=owner, balance=deposit))

    @transactional
    async def transfer(self, source: str, target: str, amount: int) -> None:
        """Moves money atomically: both balances change, or neither does."""
        await self.audit.record(f"transfer {amount} from {source} to {target}")
        session = get_session()
        payer = await session.scalar(select(Account).where(Account.owner == source))
        payee = await session.scalar(select(Account).where(Account.owner == target))
        if payer is None or payee is None:
            raise LookupError(f"no account for {source if payer is None else target}")
        payer.balance -= amount
        payee.balance += amount
        if payer.balance < 0:
            raise ValueError(f"{source} cannot pay {amount}")

    @transactional(read_only=True)
    async def balances(self) -> dict[str, int]:
        rows = await get_session().execute(select(Account.owner, Account.balance).order_by(Account.owner))
        return {owner: balance for owner, balance in rows}


async def main() -> None:
    url = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    container = init(
        modules=[__name__, "pico_sqlalchemy"],
        config=configuration(DictSource({"database": {"url": url}})),
    )
    try:
        bank = await container.aget(Bank)
        await bank.open_account("alice", 100)
        await bank.open_account("bob", 20)
        await bank.transfer("alice", "bob", 30)
        try:
            await bank.transfer("bob", "alice", 500)
        except ValueError as error:
            print(f"refused: {error}")
        print(f"balances: {await bank.balances()}")
        print(f"audit entries: {await bank.audit.size()}")
    finally:
        await container.cleanup_all_async()


if __name__ == "__main__":
    asyncio.run(main())
