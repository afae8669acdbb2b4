"""Callbacks at the end of a transaction, and event listeners that wait for the commit."""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass

import pytest
from pico_ioc import AutoSubscriberMixin, Event, EventBus, PicoContainer, component
from sqlalchemy import String

from pico_sqlalchemy import (
    AppBase,
    DeclarationError,
    IllegalTransactionStateError,
    Mapped,
    Outcome,
    Phase,
    SessionManager,
    UnexpectedRollbackError,
    after_commit,
    after_completion,
    after_rollback,
    before_commit,
    get_session,
    mapped_column,
    transactional,
    transactional_event_listener,
)
from support import CreateTables  # noqa: F401 - the container scans it from this module

MODULE = sys.modules[__name__]


class Signup(AppBase):
    __tablename__ = "sync_signups"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(80))


@dataclass(frozen=True)
class UserSignedUp(Event):
    email: str


SENT: list[str] = []


@component
class Mailer(AutoSubscriberMixin):
    @transactional_event_listener(UserSignedUp)
    async def welcome(self, event: UserSignedUp) -> None:
        SENT.append(f"welcome {event.email}")

    @transactional_event_listener(UserSignedUp, phase=Phase.AFTER_ROLLBACK)
    def apologise(self, event: UserSignedUp) -> None:
        SENT.append(f"sorry {event.email}")

    @transactional_event_listener(UserSignedUp, phase="BEFORE_COMMIT", fallback_execution=True)
    async def audit(self, event: UserSignedUp) -> None:
        SENT.append(f"audit {event.email}")


@component
class Signups:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    @transactional
    async def sign_up(self, email: str, *, fail: bool = False) -> None:
        get_session().add(Signup(email=email))
        await self.bus.publish(UserSignedUp(email))
        if fail:
            raise ValueError(email)


@pytest.fixture(autouse=True)
def reset() -> None:
    SENT.clear()


@pytest.fixture
async def container(make_container) -> PicoContainer:  # type: ignore[no-untyped-def]
    # pico-ioc's EventBus is a component of its own module, scanned like ours.
    return await make_container([MODULE, "pico_ioc.event_bus"])


async def emails(peek) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(await peek.column("SELECT email FROM sync_signups"))


class TestCallbacks:
    async def test_after_commit_runs_after_real_commit_in_order(self, container, peek) -> None:
        """after_commit callbacks (sync and async) run in order, once the row is really committed."""
        manager = await container.aget(SessionManager)
        seen: list[object] = []

        async def check_committed() -> None:
            seen.append(await emails(peek))

        async with manager.transaction() as tx:
            tx.session.add(Signup(email="a@x"))
            after_commit(lambda: seen.append("first"))
            after_commit(check_committed)
            after_completion(seen.append)
            assert seen == []
        assert seen == ["first", ["a@x"], Outcome.COMMITTED]

    async def test_not_on_rollback_or_rollback_only(self, container) -> None:
        """after_commit never fires for a rolled back or a rollback-only transaction."""
        manager = await container.aget(SessionManager)
        seen: list[object] = []

        @transactional
        async def inner_fails() -> None:
            raise ValueError("inner")

        with pytest.raises(ValueError, match="boom"):
            async with manager.transaction():
                after_commit(lambda: seen.append("committed"))
                after_rollback(lambda: seen.append("rolled back"))
                raise ValueError("boom")
        with pytest.raises(UnexpectedRollbackError):
            async with manager.transaction():
                after_commit(lambda: seen.append("committed"))
                after_completion(seen.append)
                with contextlib.suppress(ValueError):
                    await inner_fails()
        assert seen == ["rolled back", Outcome.ROLLED_BACK]

    async def test_not_at_end_of_joined_or_nested_scope(self, container) -> None:
        """Neither a joined scope ending nor a released savepoint fires after_commit; the commit does."""
        manager = await container.aget(SessionManager)
        seen: list[str] = []
        async with manager.transaction():
            async with manager.transaction():
                after_commit(lambda: seen.append("joined"))
            async with manager.transaction(propagation="NESTED"):
                after_commit(lambda: seen.append("nested"))
            assert seen == []
        assert seen == ["joined", "nested"]

    async def test_rolled_back_savepoint_drops_its_callbacks(self, container) -> None:
        """Callbacks registered in a savepoint that rolls back are dropped with its work."""
        manager = await container.aget(SessionManager)
        seen: list[str] = []
        async with manager.transaction():
            with pytest.raises(ValueError, match="undo"):
                async with manager.transaction(propagation="NESTED"):
                    after_commit(lambda: seen.append("undone"))
                    raise ValueError("undo")
            after_commit(lambda: seen.append("kept"))
        assert seen == ["kept"]

    async def test_before_commit_can_write(self, container, peek) -> None:
        """before_commit runs inside the transaction; what it writes commits with it."""
        manager = await container.aget(SessionManager)

        async def stamp() -> None:
            get_session().add(Signup(email="stamp@x"))

        async with manager.transaction() as tx:
            tx.session.add(Signup(email="b@x"))
            before_commit(stamp)
        assert await emails(peek) == ["b@x", "stamp@x"]

    async def test_failing_before_commit_rolls_back(self, container, peek) -> None:
        """An error in before_commit rolls the transaction back and reaches the caller."""
        manager = await container.aget(SessionManager)
        seen: list[object] = []

        def refuse() -> None:
            raise PermissionError("quota")

        with pytest.raises(PermissionError, match="quota"):
            async with manager.transaction() as tx:
                tx.session.add(Signup(email="c@x"))
                before_commit(refuse)
                after_completion(seen.append)
        assert await emails(peek) == []
        assert seen == [Outcome.ROLLED_BACK]

    async def test_after_commit_error_is_logged_not_raised(self, container, peek, caplog) -> None:
        """A failing after_commit callback is logged; the commit stands and later callbacks still run."""
        manager = await container.aget(SessionManager)
        seen: list[str] = []

        def broken() -> None:
            raise RuntimeError("smtp down")

        with caplog.at_level(logging.ERROR, logger="pico_sqlalchemy"):
            async with manager.transaction() as tx:
                tx.session.add(Signup(email="d@x"))
                after_commit(broken)
                after_commit(lambda: seen.append("still runs"))
        assert await emails(peek) == ["d@x"]
        assert seen == ["still runs"]
        assert "smtp down" in caplog.text

    async def test_outside_transaction_refused(self, container) -> None:
        """Registering a callback outside a transaction fails clearly."""
        manager = await container.aget(SessionManager)
        with pytest.raises(IllegalTransactionStateError, match="after_commit"):
            after_commit(lambda: None)
        async with manager.transaction(propagation="SUPPORTS"):
            with pytest.raises(IllegalTransactionStateError):
                after_commit(lambda: None)


class TestTransactionalEvents:
    async def test_delivered_after_commit(self, container, peek) -> None:
        """An event published in a committed transaction reaches after-commit and before-commit listeners."""
        await (await container.aget(Signups)).sign_up("e@x")
        assert SENT == ["audit e@x", "welcome e@x"]
        assert await emails(peek) == ["e@x"]

    async def test_rollback_sends_apology_not_welcome(self, container, peek) -> None:
        """A rolled back transaction delivers only to AFTER_ROLLBACK listeners."""
        with pytest.raises(ValueError, match="f@x"):
            await (await container.aget(Signups)).sign_up("f@x", fail=True)
        assert SENT == ["sorry f@x"]
        assert await emails(peek) == []

    async def test_outside_transaction_dropped_unless_fallback(self, container) -> None:
        """Published outside a transaction, only listeners with fallback_execution run, at once."""
        bus = await container.aget(EventBus)
        await container.aget(Mailer)
        await bus.publish(UserSignedUp("g@x"))
        assert SENT == ["audit g@x"]

    def test_unknown_phase_refused(self) -> None:
        """An unknown phase fails when the decorator is applied, naming the handler."""
        with pytest.raises(DeclarationError, match="on_signup"):

            @transactional_event_listener(UserSignedUp, phase="LATER")
            async def on_signup(event: UserSignedUp) -> None: ...
