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
from types import TracebackType
from typing import Any, TypeVar

from pico_ioc import PicoContainer, cleanup, component
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from .config import DatabaseSettings, mask_url
from .engine import create_engine, transaction_options
from .exceptions import (
    IllegalTransactionStateError,
    NoActiveSessionError,
    ReadOnlyTransactionError,
    TransactionTimeoutError,
    UnexpectedRollbackError,
)
from .propagation import Action, decide
from .retry import is_transient
from .synchronization import Outcome, logger, run_after_completion, run_before_commit
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


def current_transaction() -> Transaction | None:
    """Return the transaction running in this task under the running manager, if any."""
    return _running[-1].current if _running else None


class GuardedSession(Session):
    """The sync session behind every AsyncSession: refuses cross-task use and read-only writes."""


@event.listens_for(GuardedSession, "do_orm_execute")
def _guard_statement(state: ORMExecuteState) -> None:
    tx: Transaction | None = state.session.info.get(_TX_KEY)
    if tx is None:
        return
    tx.session  # noqa: B018 - the property raises CrossTaskSessionError for another task
    # Raw SQL is left to the database, which refuses writes in a read-only scope.
    if tx.definition.read_only and (state.is_insert or state.is_update or state.is_delete):
        raise ReadOnlyTransactionError(type(state.statement).__name__.upper())


@event.listens_for(GuardedSession, "before_flush")
def _guard_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    tx: Transaction | None = session.info.get(_TX_KEY)
    read_only = tx is not None and tx.definition.read_only
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


async def _within_timeout(definition: TransactionDefinition, body: Awaitable[T]) -> T:
    limit = definition.timeout
    assert limit is not None
    try:
        async with asyncio.timeout(limit) as deadline:
            return await body
    except TimeoutError as error:
        if deadline.expired():
            raise TransactionTimeoutError(definition.name, limit) from error
        raise


async def _finish(session: AsyncSession, commit: bool) -> None:
    try:
        if commit:
            await session.commit()
        else:
            await session.rollback()
    finally:
        await session.close()


_Scope = tuple[Transaction, Token[Transaction | None] | None, Any]

_current_task = asyncio.current_task
_JOIN, _BEGIN, _SAVEPOINT_ACTION = Action.JOIN, Action.BEGIN, Action.SAVEPOINT
_PHYSICAL, _SAVEPOINT, _NONE = Kind.PHYSICAL, Kind.SAVEPOINT, Kind.NONE


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
        self._binds: dict[tuple[bool, str | None, bool, float | None], AsyncEngine] = {}
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
        timeout: float | None = None,
    ) -> TransactionContext:
        """Open a transactional scope programmatically; the options mean what they do on ``@transactional``.

        ``retry`` is only offered by ``@transactional``: a retry re-runs the whole method, and
        the body of an ``async with`` block cannot be run again.

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
            timeout=timeout,
        )
        return TransactionContext(self, definition)

    async def run(
        self,
        definition: TransactionDefinition,
        function: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """Run ``function(*args, **kwargs)`` once in the scope ``definition`` asks for."""
        scope = self._enter(definition)
        if scope[0].kind is _SAVEPOINT and scope[1] is not None:
            await self._open_savepoint(scope)
        try:
            if definition.timeout is not None and scope[1] is not None and scope[0].kind is _PHYSICAL:
                result = await _within_timeout(definition, function(*args, **kwargs))
            else:
                result = await function(*args, **kwargs)
        except BaseException as error:
            pending = self._exit(definition, scope, error)
            if pending is not None:
                await pending
            raise
        pending = self._exit(definition, scope, None)
        if pending is not None:
            await pending
        return result

    async def run_retrying(
        self,
        definition: TransactionDefinition,
        function: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """Like :meth:`run`, and run again after a transient failure, as ``definition.retry`` allows."""
        policy = definition.retry
        assert policy is not None
        retry = 0
        while True:
            try:
                return await self.run(definition, function, args, kwargs)
            except Exception as error:
                retry += 1
                if retry > policy.retries or not is_transient(error):
                    raise
                delay = policy.delay(retry)
                logger.info(
                    "Retrying %s (retry %d of %d in %.3f s) after a transient failure: %s",
                    definition.name,
                    retry,
                    policy.retries,
                    delay,
                    error,
                )
                await asyncio.sleep(delay)

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

    # The steps below run on every call: they avoid coroutines where nothing needs awaiting and
    # look enum members up once, at import (see _PHYSICAL and friends).

    def _enter(self, definition: TransactionDefinition) -> _Scope:
        """Decide, install the new transaction object, and return what ``_exit`` needs.

        A savepoint is only prepared here; ``_open_savepoint`` sets it on the database.
        """
        task = _current_task()
        current = self._current.get()
        action = decide(definition, current, task)
        if definition.retry is not None and (action is _JOIN or action is _SAVEPOINT_ACTION):
            raise IllegalTransactionStateError(
                f"{definition.name} declares retry but joined a running transaction; only the scope "
                "that begins the physical transaction can retry it. Declare retry on the outermost scope.",
                method=definition.name,
                propagation=definition.propagation.name,
            )
        if action is _JOIN:
            assert current is not None
            current.joined += 1
            return current, None, None
        if action is _BEGIN:
            tx = Transaction(self, definition, _PHYSICAL, task)
            scope_entry = self._scope.enter() if self._scope.in_use else None
            return tx, self._current.set(tx), scope_entry
        if action is _SAVEPOINT_ACTION:
            tx = Transaction(self, definition, _SAVEPOINT, task, parent=current)
        else:
            tx = Transaction(self, definition, _NONE, task)
        return tx, self._current.set(tx), None

    async def _open_savepoint(self, scope: _Scope) -> None:
        tx, token, _ = scope
        assert tx.parent is not None
        assert token is not None
        try:
            tx.savepoint = await tx.parent.session.begin_nested()
        except BaseException:
            self._current.reset(token)
            raise

    def _exit(
        self, definition: TransactionDefinition, scope: _Scope, error: BaseException | None
    ) -> Coroutine[Any, Any, None] | None:
        """End the scope; return a coroutine to await when ending it needs the database.

        A joined scope judges its error by its own rules: a ``no_rollback_for`` error leaves the
        transaction it joined alone.
        """
        tx, token, scope_entry = scope
        if token is None:
            tx.joined -= 1
            if error is not None and tx.kind is not _NONE and definition.rolls_back_on(error):
                tx.mark_failed_inner_scope()
            return None
        if (
            tx._session is None
            and scope_entry is None
            and not tx.synchronizations
            and tx.kind is not _SAVEPOINT
        ):
            # Nothing reached the database: no connection to commit, roll back or return.
            self._current.reset(token)
            if tx.rollback_only_from_inner and (error is None or not tx.definition.rolls_back_on(error)):
                raise UnexpectedRollbackError(tx.definition.name) from error
            return None
        return self._finish_scope(tx, token, scope_entry, error)

    async def _finish_scope(
        self, tx: Transaction, token: Token[Transaction | None], scope_entry: Any, error: BaseException | None
    ) -> None:
        try:
            if tx.kind is _PHYSICAL:
                await self._end_physical(tx, token, error)
            else:
                self._current.reset(token)
                if tx.kind is _SAVEPOINT:
                    await self._end_savepoint(tx, error)
                else:
                    await self._end_without(tx, error)
        finally:
            if scope_entry is not None:
                await self._scope.exit(scope_entry)

    async def _end_physical(
        self, tx: Transaction, token: Token[Transaction | None], error: BaseException | None
    ) -> None:
        wants_commit = error is None or not tx.definition.rolls_back_on(error)
        commit = wants_commit and not tx.rollback_only
        if commit and tx.synchronizations:
            try:
                # Still current: a before-commit callback may use get_session() and write.
                await run_before_commit(tx)
            except BaseException:
                self._current.reset(token)
                await self._complete(tx, commit=False)
                raise
        self._current.reset(token)
        await self._complete(tx, commit)
        if wants_commit and tx.rollback_only_from_inner:
            raise UnexpectedRollbackError(tx.definition.name) from error

    async def _complete(self, tx: Transaction, commit: bool) -> None:
        """Commit or roll back the physical transaction, close its session, run after-callbacks."""
        try:
            if tx._session is not None:
                await _run_to_completion(_finish(tx._session, commit))
        except BaseException:
            commit = False
            raise
        finally:
            if tx.synchronizations:
                await run_after_completion(tx, Outcome.COMMITTED if commit else Outcome.ROLLED_BACK)

    async def _end_savepoint(self, tx: Transaction, error: BaseException | None) -> None:
        release = error is None or not tx.definition.rolls_back_on(error)
        released = release and not tx.rollback_only
        savepoint = tx.savepoint
        assert savepoint is not None
        try:
            await _run_to_completion(savepoint.commit() if released else savepoint.rollback())
        except BaseException:
            # A release can fail, typically on a constraint when pending objects are flushed:
            # then the savepoint is rolled back, as for any failure inside it, and the outer
            # transaction goes on. Only a savepoint that cannot be rolled back dooms it.
            if released:
                try:
                    await _run_to_completion(savepoint.rollback())
                except BaseException:
                    tx.root.mark_failed_inner_scope()
            else:
                tx.root.mark_failed_inner_scope()
            raise
        if released and tx.synchronizations:
            # Work that was undone does not announce itself: callbacks of a rolled back
            # savepoint are dropped; those of a released one wait for the outer commit.
            parent = tx.parent
            assert parent is not None
            parent.synchronizations = (parent.synchronizations or []) + tx.synchronizations
        if release and tx.rollback_only_from_inner:
            raise UnexpectedRollbackError(tx.definition.name) from error

    async def _end_without(self, tx: Transaction, error: BaseException | None) -> None:
        if tx._session is not None:
            # In autocommit every statement has committed already; committing here only
            # flushes objects still pending, so that no write is dropped on a normal exit.
            await _run_to_completion(_finish(tx._session, error is None))

    def _new_session(self, tx: Transaction) -> AsyncSession:
        definition = tx.definition
        autocommit = tx.kind is _NONE
        read_only = definition.read_only
        session = AsyncSession(
            bind=self._bind(
                read_only,
                None if autocommit else definition.isolation_level,
                autocommit,
                definition.timeout if tx.kind is Kind.PHYSICAL else None,
            ),
            expire_on_commit=False,
            autoflush=not read_only,
            sync_session_class=GuardedSession,
        )
        session.sync_session.info[_TX_KEY] = tx
        return session

    def _bind(
        self, read_only: bool, isolation_level: str | None, autocommit: bool, timeout: float | None
    ) -> AsyncEngine:
        key = (read_only, isolation_level, autocommit, timeout)
        bind = self._binds.get(key)
        if bind is None:
            options = transaction_options(
                self._dialect,
                read_only=read_only,
                isolation_level=isolation_level,
                autocommit=autocommit,
                timeout=timeout,
            )
            bind = self._engine.execution_options(**options) if options else self._engine
            self._binds[key] = bind
        return bind


class TransactionContext:
    """``async with manager.transaction(...) as tx``: the programmatic form of ``@transactional``."""

    __slots__ = ("_deadline", "_definition", "_manager", "_scope")

    def __init__(self, manager: SessionManager, definition: TransactionDefinition) -> None:
        self._manager = manager
        self._definition = definition
        self._scope: _Scope | None = None
        self._deadline: asyncio.Timeout | None = None

    async def __aenter__(self) -> Transaction:
        if self._scope is not None:
            raise RuntimeError("a transaction() context cannot be entered twice")
        self._scope = scope = self._manager._enter(self._definition)
        tx = scope[0]
        if tx.kind is _SAVEPOINT and scope[1] is not None:
            await self._manager._open_savepoint(scope)
        limit = self._definition.timeout
        if limit is not None and scope[1] is not None and tx.kind is _PHYSICAL:
            self._deadline = asyncio.timeout(limit)
            await self._deadline.__aenter__()
        return tx

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        scope, self._scope = self._scope, None
        deadline, self._deadline = self._deadline, None
        assert scope is not None
        if deadline is not None:
            try:
                await deadline.__aexit__(exc_type, error, traceback)
            except TimeoutError as expired:
                limit = self._definition.timeout
                assert limit is not None
                timeout_error = TransactionTimeoutError(self._definition.name, limit)
                pending = self._manager._exit(self._definition, scope, timeout_error)
                if pending is not None:
                    await pending
                raise timeout_error from expired
        pending = self._manager._exit(self._definition, scope, error)
        if pending is not None:
            await pending


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
