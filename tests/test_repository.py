"""@repository: a component whose async methods are transactional by default, and what it leaves alone."""

from __future__ import annotations

import inspect
import sys

import pytest
from pico_ioc import PicoContainer, cleanup, component
from sqlalchemy import String, select

from pico_sqlalchemy import (
    AppBase,
    CrudRepository,
    DeclarationError,
    Mapped,
    NoActiveSessionError,
    SessionManager,
    get_session,
    mapped_column,
    query,
    repository,
    transactional,
)
from pico_sqlalchemy.decorators import TRANSACTIONAL_ATTRIBUTE
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Account(AppBase):
    __tablename__ = "repo_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(40), unique=True)


class AuditLine(AppBase):
    __tablename__ = "repo_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str] = mapped_column(String(80))


class Auditing:
    """A plain mixin: its async methods become transactional in the repository that uses it."""

    async def audit(self, note: str) -> None:
        get_session().add(AuditLine(note=note))


@repository(entity=Account)
class Accounts(Auditing):
    limit = 3

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    async def open(self, owner: str) -> Account:
        account = Account(owner=owner)
        get_session(self.manager).add(account)
        return account

    @query(expr="owner = :owner")
    async def by_owner(self, owner: str) -> Account | None: ...

    @transactional(propagation="REQUIRES_NEW")
    async def open_independently(self, owner: str) -> None:
        get_session().add(Account(owner=owner))

    async def in_transaction(self) -> bool:
        current = self.manager.current
        return current is not None and current.is_active and not current.definition.read_only

    def describe(self, owner: str) -> str:
        return f"account of {owner}"

    @staticmethod
    def normalise(owner: str) -> str:
        return owner.strip().lower()

    @classmethod
    def maximum(cls) -> int:
        return cls.limit

    @property
    def name(self) -> str:
        return "accounts"

    async def _open_quietly(self, owner: str) -> None:
        get_session().add(Account(owner=owner))


@repository
class SpecialAccounts(Accounts):
    """A repository that extends another one is registered under its own key."""

    async def open_special(self, owner: str) -> Account:
        return await self.open(f"special-{owner}")


@component
class Bank:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    @transactional
    async def open_then_fail(self, owner: str) -> None:
        await self.accounts.open(owner)
        await self.accounts.open_independently(f"{owner}-independent")
        assert await self.accounts.by_owner(owner) is not None  # the finder joined and sees it
        raise RuntimeError("business rule broken after saving")

    @transactional
    async def open_two(self, first: str, second: str) -> None:
        await self.accounts.open(first)
        await self.accounts.open(second)


CLOSED: list[list[str]] = []


@component(scope="transaction")
class Journal:
    """One per physical transaction; records which repository calls shared it."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @cleanup
    async def close(self) -> None:
        CLOSED.append(self.notes)


@repository
class JournaledAccounts:
    def __init__(self, container: PicoContainer) -> None:
        self.container = container

    async def note(self, text: str) -> None:
        (await self.container.aget(Journal)).notes.append(text)


@component
class JournalService:
    def __init__(self, journaled: JournaledAccounts) -> None:
        self.journaled = journaled

    @transactional
    async def two_notes(self) -> None:
        await self.journaled.note("a")
        await self.journaled.note("b")


@pytest.fixture(autouse=True)
def reset() -> None:
    CLOSED.clear()


class TestRegistration:
    async def test_both_spellings_register_components(self, make_container) -> None:
        """@repository and @repository(entity=...) both register the class with the container."""
        container = await make_container([MODULE])
        accounts = await container.aget(Accounts)
        assert type(accounts) is Accounts
        assert type(await container.aget(JournaledAccounts)) is JournaledAccounts

    async def test_subclass_gets_its_own_key(self, make_container) -> None:
        """A repository subclassing another one does not replace it in the container."""
        container = await make_container([MODULE])
        assert type(await container.aget(Accounts)) is Accounts
        special = await container.aget(SpecialAccounts)
        assert type(special) is SpecialAccounts
        assert (await special.open_special("x")).owner == "special-x"

    def test_crud_base_is_not_a_component(self) -> None:
        """CrudRepository itself carries no pico-ioc registration to pass on to subclasses."""
        assert not hasattr(CrudRepository, "_pico_infra")
        assert not hasattr(CrudRepository, "_pico_key")


class TestDefaultTransactions:
    async def test_public_async_method_commits_on_its_own(self, make_container, peek) -> None:
        """A public async method runs in a REQUIRED read-write transaction that commits."""
        container = await make_container([MODULE])
        accounts = await container.aget(Accounts)
        assert await accounts.in_transaction() is True
        opened = await accounts.open("ann")
        assert isinstance(opened, Account) and opened.id is not None
        assert await peek.column("SELECT owner FROM repo_accounts") == ["ann"]
        definition = getattr(Accounts.open, TRANSACTIONAL_ATTRIBUTE)
        assert (definition.propagation.name, definition.read_only) == ("REQUIRED", False)

    async def test_joins_service_and_rolls_back_with_it(self, make_container, peek) -> None:
        """Called from a service's transaction, a repository method joins it and is undone with it."""
        container = await make_container([MODULE])
        with pytest.raises(RuntimeError, match="business rule"):
            await (await container.aget(Bank)).open_then_fail("bob")
        assert await peek.column("SELECT owner FROM repo_accounts") == ["bob-independent"]

    async def test_service_commits_all_repository_work(self, make_container, peek) -> None:
        """Repository calls joined to one service transaction commit together."""
        container = await make_container([MODULE])
        await (await container.aget(Bank)).open_two("cy", "di")
        assert await peek.column("SELECT owner FROM repo_accounts ORDER BY owner") == ["cy", "di"]

    def test_own_transactional_is_kept(self) -> None:
        """A method with its own @transactional keeps its declaration (here REQUIRES_NEW)."""
        definition = getattr(Accounts.open_independently, TRANSACTIONAL_ATTRIBUTE)
        assert definition.propagation.name == "REQUIRES_NEW"

    async def test_inherited_mixin_method_is_transactional(self, make_container, peek) -> None:
        """An async method inherited from a plain base class runs in a transaction too."""
        container = await make_container([MODULE])
        await (await container.aget(Accounts)).audit("checked")
        assert await peek.column("SELECT note FROM repo_audit") == ["checked"]
        assert not hasattr(Auditing.audit, TRANSACTIONAL_ATTRIBUTE)


class TestLeftAlone:
    async def test_sync_static_class_methods_and_properties(self, make_container) -> None:
        """Sync methods, static and class methods and properties work as written, unwrapped."""
        container = await make_container([MODULE])
        accounts = await container.aget(Accounts)
        assert accounts.describe("ann") == "account of ann"
        assert Accounts.normalise("  ANN ") == "ann" and accounts.normalise(" B") == "b"
        assert Accounts.maximum() == 3 and accounts.maximum() == 3
        assert accounts.name == "accounts"
        for name in ("describe", "normalise", "maximum", "name"):
            assert not hasattr(inspect.getattr_static(Accounts, name), TRANSACTIONAL_ATTRIBUTE), name
        assert not inspect.iscoroutinefunction(Accounts.describe)

    async def test_private_async_method_not_wrapped(self, make_container) -> None:
        """A private async method opens no transaction of its own."""
        container = await make_container([MODULE])
        accounts = await container.aget(Accounts)
        assert not hasattr(Accounts._open_quietly, TRANSACTIONAL_ATTRIBUTE)
        with pytest.raises(NoActiveSessionError):
            await accounts._open_quietly("eve")


class TestTransactionScope:
    async def test_repository_calls_share_the_transaction_scope(self, make_container) -> None:
        """A transaction-scoped component is shared by the repository calls of one transaction."""
        container = await make_container([MODULE])
        journaled = await container.aget(JournaledAccounts)
        await (await container.aget(JournalService)).two_notes()
        assert CLOSED == [["a", "b"]]
        await journaled.note("alone")
        await journaled.note("again")
        assert CLOSED == [["a", "b"], ["alone"], ["again"]]


class TestMistakes:
    def test_entity_must_be_mapped(self) -> None:
        """@repository(entity=...) with a class that is not mapped fails, naming the repository."""

        class NotAModel:
            pass

        with pytest.raises(DeclarationError) as caught:

            @repository(entity=NotAModel)
            class Repo:
                pass

        assert caught.value.target.endswith("Repo") and "mapped class" in caught.value.problem

    def test_repository_decorates_classes(self) -> None:
        """@repository on a function fails."""

        async def find() -> None: ...

        with pytest.raises(DeclarationError, match="decorates a class"):
            repository(find)  # type: ignore[type-var]

    async def test_finder_query_runs_against_the_repository_entity(self, make_container) -> None:
        """The repository's entity is what expr= finders select."""
        container = await make_container([MODULE])
        accounts = await container.aget(Accounts)
        await accounts.open("fay")
        found = await accounts.by_owner("fay")
        assert isinstance(found, Account)
        manager = await container.aget(SessionManager)
        async with manager.transaction(read_only=True) as tx:
            assert (await tx.session.scalars(select(Account.owner))).all() == ["fay"]
