"""SessionManager: the engine, the current transaction of each task, and the propagation steps.

One call's path: ``@transactional`` hands its frozen definition to :meth:`SessionManager.run`;
:meth:`_enter` asks :func:`~pico_sqlalchemy.propagation.decide` what to do and installs a
:class:`~pico_sqlalchemy.transaction.Transaction` in the context variable; the body runs; and
:meth:`_exit` commits, rolls back, releases the savepoint or marks rollback-only, then restores
the previous transaction. The session, and with it a connection, is only created when the body
first asks for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from pico_ioc import PicoContainer, cleanup, component
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from .config import DatabaseSettings, mask_url
from .engine import create_engine, transaction_options
from .exceptions import NoActiveSessionError, ReadOnlyTransactionError, UnexpectedRollbackError
from .propagation import Action, decide
from .transaction import Kind, Propagation, Transaction, TransactionDefinition
from .wiring import TransactionScope

T = TypeVar("T")

_TX_KEY = "pico_sqlalchemy.transaction"

# Managers that are running, oldest first. A @transactional method that is not bound to a
# manager uses the newest one, so containers built one after another in a process (as tests
# do) each see their own.
_running: list[SessionManager] = []


def running_manager() -> SessionManager:
    """Return the most recently started SessionManager that has not been disposed.

    Raises:
        NoActiveSessionError: When no SessionManager is running.
    """
    if not _running:
        raise NoActiveSessionError(
            "No SessionManager is running. Build the container with "
            "init(modules=[..., 'pico_sqlalchemy']) before calling @transactional methods."
        )
    return _running[-1]


class GuardedSession(Session):
    """The sync session behind every AsyncSession: refuses cross-task use and read-only writes."""


@event.listens_for(GuardedSession, "do_orm_execute")
def _guard_statement(state: ORMExecuteState) -> None:
    tx: Transaction | None = state.session.info.get(_TX_KEY)
    if tx is None:
        return
    tx.session  # noqa: B018 - the property raises CrossTaskSessionError for another task
    # Raw SQL is left to the database, which refuses writes in a read-only transaction.
    if (
        tx.definition.read_only
        and tx.kind is not Kind.NONE
        and (state.is_insert or state.is_update or state.is_delete)
    ):
        raise ReadOnlyTransactionError(type(state.statement).__name__.upper())


@event.listens_for(GuardedSession, "before_flush")
def _guard_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    tx: Transaction | None = session.info.get(_TX_KEY)
    read_only = tx is not None and tx.definition.read_only and tx.kind is not Kind.NONE
    if read_only and (session.new or session.dirty or session.deleted):
        raise ReadOnlyTransactionError("flush of pending changes")


async def _run_to_completion(operation: Coroutine[Any, Any, None]) -> None:
    """Run ``operation`` to its end even if the caller is cancelled meanwhile, then re-raise."""
    task = asyncio.ensure_future(operation)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as error:
            cancelled = error
    if cancelled is not None:
        raise cancelled
    task.result()


async def _finish(session: AsyncSession, commit: bool) -> None:
    try:
        if commit:
            await session.commit()
        else:
            await session.rollback()
    finally:
        await session.close()


_Scope = tuple[Transaction | None, Token[Transaction | None] | None, Any]


@component
class SessionManager:
    """Owns the engine and runs transactional scopes for the container it belongs to.

    Args:
        settings: The validated ``database`` section.
        container: The container, for the ``transaction`` scope; optional when used alone.
    """

    def __init__(self, settings: DatabaseSettings, container: PicoContainer | None = None) -> None:
        self.settings = settings
        self._engine = create_engine(settings)
        self._dialect = self._engine.dialect.name
        self._current: ContextVar[Transaction | None] = ContextVar(
            "pico_sqlalchemy_transaction", default=None
        )
        self._binds: dict[tuple[bool, str | None, bool], AsyncEngine] = {}
        self._scope = TransactionScope(container)
        self._disposed = False
        _running.append(self)

    def __repr__(self) -> str:
        return f"<SessionManager {mask_url(self.settings.url)}>"

    @property
    def engine(self) -> AsyncEngine:
        """The application's ``AsyncEngine``."""
        return self._engine

    @property
    def current(self) -> Transaction | None:
        """The transaction (or non-transactional scope) running in this task, if any."""
        tx = self._current.get()
        return tx if tx is not None and tx.owner is asyncio.current_task() else None

    def transaction(
        self,
        *,
        propagation: Propagation | str = Propagation.REQUIRED,
        read_only: bool = False,
        isolation_level: str | None = None,
        rollback_for: tuple[type[BaseException], ...] = (),
        no_rollback_for: tuple[type[BaseException], ...] = (),
    ) -> TransactionContext:
        """Open a transactional scope programmatically; the options mean what they do on ``@transactional``.

        Example:
            >>> async with manager.transaction(propagation="REQUIRES_NEW") as tx:  # doctest: +SKIP
            ...     tx.session.add(AuditEntry(...))
        """
        definition = TransactionDefinition.build(
            owner="SessionManager.transaction()",
            propagation=propagation,
            read_only=read_only,
            isolation_level=isolation_level,
            rollback_for=rollback_for,
            no_rollback_for=no_rollback_for,
        )
        return TransactionContext(self, definition)

    async def run(
        self,
        definition: TransactionDefinition,
        function: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """Run ``function(*args, **kwargs)`` in the scope ``definition`` asks for."""
        scope = await self._enter(definition)
        try:
            result = await function(*args, **kwargs)
        except BaseException as error:
            await self._exit(scope, error)
            raise
        await self._exit(scope, None)
        return result

    async def dispose(self) -> None:
        """Close every pooled connection; the manager is no longer the running one afterwards."""
        if self._disposed:
            return
        self._disposed = True
        if self in _running:
            _running.remove(self)
        await self._engine.dispose()

    @cleanup  # type: ignore[untyped-decorator]  # pico-ioc's decorator carries no annotations
    async def _dispose_on_cleanup(self) -> None:
        await self.dispose()

    # -- the propagation steps ---------------------------------------------------------------

    async def _enter(self, definition: TransactionDefinition) -> _Scope:
        task = asyncio.current_task()
        current = self._current.get()
        action = decide(definition, current, task)
        if action is Action.JOIN:
            assert current is not None
            current.joined += 1
            return current, None, None
        if action is Action.SAVEPOINT:
            assert current is not None
            tx = Transaction(self, definition, Kind.SAVEPOINT, task, parent=current)
            tx.savepoint = await current.session.begin_nested()
        elif action is Action.BEGIN:
            tx = Transaction(self, definition, Kind.PHYSICAL, task)
        else:
            tx = Transaction(self, definition, Kind.NONE, task)
        scope_entry = self._scope.enter() if action is Action.BEGIN and self._scope.in_use else None
        return tx, self._current.set(tx), scope_entry

    async def _exit(self, scope: _Scope, error: BaseException | None) -> None:
        tx, token, scope_entry = scope
        assert tx is not None
        if token is None:
            tx.joined -= 1
            if error is not None and tx.kind is not Kind.NONE and tx.definition.rolls_back_on(error):
                tx.mark_failed_inner_scope()
            return
        self._current.reset(token)
        try:
            if tx.kind is Kind.PHYSICAL:
                await self._end_physical(tx, error)
            elif tx.kind is Kind.SAVEPOINT:
                await self._end_savepoint(tx, error)
            else:
                await self._end_without(tx, error)
        finally:
            if scope_entry is not None:
                await self._scope.exit(scope_entry)

    async def _end_physical(self, tx: Transaction, error: BaseException | None) -> None:
        commit = error is None or not tx.definition.rolls_back_on(error)
        if tx._session is not None:
            await _run_to_completion(_finish(tx._session, commit and not tx.rollback_only))
        if commit and tx.rollback_only_from_inner:
            raise UnexpectedRollbackError(tx.definition.name) from error

    async def _end_savepoint(self, tx: Transaction, error: BaseException | None) -> None:
        release = error is None or not tx.definition.rolls_back_on(error)
        savepoint = tx.savepoint
        assert savepoint is not None
        try:
            await _run_to_completion(
                savepoint.commit() if release and not tx.rollback_only else savepoint.rollback()
            )
        except BaseException:
            tx.root.mark_failed_inner_scope()
            raise
        if release and tx.rollback_only_from_inner:
            raise UnexpectedRollbackError(tx.definition.name) from error

    async def _end_without(self, tx: Transaction, error: BaseException | None) -> None:
        if tx._session is not None:
            # In autocommit every statement has committed already; committing here only
            # flushes objects still pending, so that no write is dropped on a normal exit.
            await _run_to_completion(_finish(tx._session, error is None))

    def _new_session(self, tx: Transaction) -> AsyncSession:
        definition = tx.definition
        autocommit = tx.kind is Kind.NONE
        read_only = definition.read_only and not autocommit
        session = AsyncSession(
            bind=self._bind(read_only, None if autocommit else definition.isolation_level, autocommit),
            expire_on_commit=False,
            autoflush=not read_only,
            sync_session_class=GuardedSession,
        )
        session.sync_session.info[_TX_KEY] = tx
        return session

    def _bind(self, read_only: bool, isolation_level: str | None, autocommit: bool) -> AsyncEngine:
        key = (read_only, isolation_level, autocommit)
        bind = self._binds.get(key)
        if bind is None:
            options = transaction_options(
                self._dialect, read_only=read_only, isolation_level=isolation_level, autocommit=autocommit
            )
            bind = self._engine.execution_options(**options) if options else self._engine
            self._binds[key] = bind
        return bind


class TransactionContext:
    """``async with manager.transaction(...) as tx``: the programmatic form of ``@transactional``."""

    __slots__ = ("_definition", "_manager", "_scope")

    def __init__(self, manager: SessionManager, definition: TransactionDefinition) -> None:
        self._manager = manager
        self._definition = definition
        self._scope: _Scope | None = None

    async def __aenter__(self) -> Transaction:
        if self._scope is not None:
            raise RuntimeError("a transaction() context cannot be entered twice")
        self._scope = await self._manager._enter(self._definition)
        tx = self._scope[0]
        assert tx is not None
        return tx

    async def __aexit__(self, exc_type: object, error: BaseException | None, traceback: object) -> None:
        scope, self._scope = self._scope, None
        assert scope is not None
        await self._manager._exit(scope, error)


def get_session(manager: SessionManager | None = None) -> AsyncSession:
    """Return the ``AsyncSession`` of the transactional scope running in this task.

    Args:
        manager: The manager whose transaction to look up; the running one by default.

    Raises:
        NoActiveSessionError: Outside every transactional scope.
        CrossTaskSessionError: In a task spawned inside a transaction it does not own.
    """
    manager = manager if manager is not None else running_manager()
    tx = manager._current.get()
    if tx is None:
        raise NoActiveSessionError(
            "get_session() was called outside a transactional scope. Call it from a "
            "@transactional method, a repository method, or inside `async with manager.transaction()`."
        )
    return tx.session
