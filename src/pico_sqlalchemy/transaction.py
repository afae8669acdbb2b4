"""Transaction vocabulary: propagation modes, the frozen definition, and the live transaction.

A :class:`TransactionDefinition` is computed once, when ``@transactional`` is applied. A
:class:`Transaction` exists for each physical transaction, each savepoint and each
non-transactional scope while it runs; joined scopes share their caller's object.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import ISOLATION_LEVELS
from .exceptions import (
    CrossTaskSessionError,
    DeclarationError,
    IllegalTransactionStateError,
    TransactionTimeoutError,
)
from .retry import Retry

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

    from .manager import SessionManager
    from .synchronization import Phase


class Propagation(enum.Enum):
    """How a transactional scope relates to a transaction that is already running.

    The names and meanings are Spring's; see the table in the documentation.
    """

    REQUIRED = "REQUIRED"
    """Join the running transaction, or begin one."""
    REQUIRES_NEW = "REQUIRES_NEW"
    """Suspend the running transaction and begin a separate one on its own connection."""
    NESTED = "NESTED"
    """Run inside a SAVEPOINT of the running transaction, or begin one."""
    SUPPORTS = "SUPPORTS"
    """Join the running transaction, or run without one."""
    MANDATORY = "MANDATORY"
    """Join the running transaction; fail if there is none."""
    NOT_SUPPORTED = "NOT_SUPPORTED"
    """Suspend the running transaction and run without one."""
    NEVER = "NEVER"
    """Run without a transaction; fail if one is running."""

    @classmethod
    def parse(cls, value: Propagation | str, *, owner: str) -> Propagation:
        """Accept a member or its name in any case; fail naming ``owner`` otherwise."""
        if isinstance(value, Propagation):
            return value
        if isinstance(value, str):
            member = cls.__members__.get(value.strip().upper())
            if member is not None:
                return member
        raise DeclarationError(
            owner, f"unknown propagation {value!r}; use one of {', '.join(cls.__members__)}."
        )


ExceptionTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class TransactionDefinition:
    """Everything a transactional scope declares, validated once.

    Attributes:
        propagation: How the scope relates to a running transaction.
        read_only: Refuse writes; joined read-write transactions are left as they are.
        isolation_level: Isolation of each new physical transaction, or the engine default.
        rollback_for: Exceptions that roll back (all do by default; this overrides a broader
            ``no_rollback_for``).
        no_rollback_for: Exceptions after which the transaction commits, then re-raises.
        timeout: Seconds a new physical transaction may run before it is rolled back with
            :class:`~pico_sqlalchemy.TransactionTimeoutError`.
        retry: Retry the whole scope after a transient failure (serialization failure,
            deadlock, busy SQLite); only a scope that begins the physical transaction may.
        name: Qualified name of the declaring method, for error messages.
    """

    propagation: Propagation = Propagation.REQUIRED
    read_only: bool = False
    isolation_level: str | None = None
    rollback_for: ExceptionTypes = ()
    no_rollback_for: ExceptionTypes = ()
    timeout: float | None = None
    retry: Retry | None = None
    name: str | None = None

    @classmethod
    def build(
        cls,
        *,
        owner: str,
        propagation: Propagation | str = Propagation.REQUIRED,
        read_only: bool = False,
        isolation_level: str | None = None,
        rollback_for: ExceptionTypes | type[BaseException] = (),
        no_rollback_for: ExceptionTypes | type[BaseException] = (),
        timeout: float | None = None,
        retry: Retry | int | None = None,
    ) -> TransactionDefinition:
        """Validate user options and build a definition; errors name ``owner``."""
        if not isinstance(read_only, bool):
            raise DeclarationError(owner, f"read_only must be True or False, got {read_only!r}.")
        if isolation_level == "AUTOCOMMIT":
            raise DeclarationError(
                owner,
                "isolation_level AUTOCOMMIT would commit each statement and roll nothing back; "
                "use propagation NOT_SUPPORTED for a scope that runs without a transaction.",
            )
        if isolation_level is not None and isolation_level not in ISOLATION_LEVELS:
            raise DeclarationError(
                owner,
                f"unknown isolation_level {isolation_level!r}; use one of {sorted(ISOLATION_LEVELS)}.",
            )
        rollback = _exception_types(rollback_for, "rollback_for", owner)
        no_rollback = _exception_types(no_rollback_for, "no_rollback_for", owner)
        both = set(rollback) & set(no_rollback)
        if both:
            names = ", ".join(sorted(t.__name__ for t in both))
            raise DeclarationError(owner, f"{names} is in both rollback_for and no_rollback_for.")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise DeclarationError(owner, f"timeout must be a positive number of seconds, got {timeout!r}.")
        mode = Propagation.parse(propagation, owner=owner)
        policy = _retry_policy(retry, owner)
        if policy is not None and mode is Propagation.MANDATORY:
            raise DeclarationError(
                owner,
                "retry on a MANDATORY scope can never apply: it always joins; retry the outermost scope.",
            )
        return cls(
            propagation=mode,
            read_only=read_only,
            isolation_level=isolation_level,
            rollback_for=rollback,
            no_rollback_for=no_rollback,
            timeout=float(timeout) if timeout is not None else None,
            retry=policy,
            name=owner,
        )

    def rolls_back_on(self, error: BaseException) -> bool:
        """Return whether ``error`` leaving the scope rolls it back.

        The nearest class in the error's MRO that either list names decides; an error that
        neither names rolls back, and so does a timeout, whatever the lists say.
        """
        if not self.no_rollback_for or isinstance(error, TransactionTimeoutError):
            return True
        for klass in type(error).__mro__:
            if klass in self.rollback_for:
                return True
            if klass in self.no_rollback_for:
                return False
        return True


def _retry_policy(value: object, owner: str) -> Retry | None:
    if value is None or value is False:
        return None
    if isinstance(value, Retry):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return Retry(retries=value)
    raise DeclarationError(owner, f"retry takes a number of retries (>= 1) or a Retry policy, got {value!r}.")


def _exception_types(value: object, option: str, owner: str) -> ExceptionTypes:
    items = value if isinstance(value, tuple | list) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise DeclarationError(owner, f"{option} takes exception classes, got {item!r}.")
    return tuple(items)


class Kind(enum.Enum):
    """What a :class:`Transaction` object stands for."""

    PHYSICAL = "physical"
    SAVEPOINT = "savepoint"
    NONE = "none"


def _task_name(task: asyncio.Task[Any] | None) -> str:
    return task.get_name() if task is not None else "<no task>"


class Transaction:
    """A running transaction, savepoint or non-transactional scope, as seen by user code.

    ``async with manager.transaction() as tx`` yields one; ``@transactional`` methods reach the
    same object through ``manager.current``. The session is created on first use, so a scope
    that never touches the database never takes a connection.
    """

    __slots__ = (
        "_session",
        "definition",
        "joined",
        "kind",
        "manager",
        "owner",
        "parent",
        "rollback_only",
        "rollback_only_from_inner",
        "root",
        "savepoint",
        "synchronizations",
    )

    def __init__(
        self,
        manager: SessionManager,
        definition: TransactionDefinition,
        kind: Kind,
        owner: asyncio.Task[Any] | None,
        parent: Transaction | None = None,
    ) -> None:
        self.manager = manager
        self.definition = definition
        self.kind = kind
        self.owner = owner
        self.parent = parent
        self.root: Transaction = parent.root if parent is not None else self
        self.rollback_only = False
        # Set when a joined scope failed or asked for rollback: the scope that began the
        # transaction then reports the rollback instead of returning as if it had committed.
        self.rollback_only_from_inner = False
        self.joined = 0
        self.savepoint: AsyncSessionTransaction | None = None
        self.synchronizations: list[tuple[Phase, Callable[..., Any]]] | None = None
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        """The ``AsyncSession`` of this transaction, created on first access.

        Raises:
            CrossTaskSessionError: When read from a task other than the one that began the
                transaction.
        """
        current = asyncio.current_task()
        if current is not self.owner:
            raise CrossTaskSessionError(_task_name(self.owner), _task_name(current))
        root = self.root
        if root._session is None:
            root._session = self.manager._new_session(root)
        return root._session

    @property
    def is_active(self) -> bool:
        """Whether a real transaction (or savepoint) backs this scope."""
        return self.kind is not Kind.NONE

    @property
    def is_new(self) -> bool:
        """Whether this scope began the physical transaction it runs in."""
        return self.kind is Kind.PHYSICAL

    def set_rollback_only(self) -> None:
        """Make this transaction roll back at its end instead of committing.

        In a savepoint only the savepoint is rolled back. Called by the scope that began the
        transaction, the rollback is silent; called from a scope that joined it, the scope that
        began it raises :class:`~pico_sqlalchemy.UnexpectedRollbackError` when it ends normally.

        Raises:
            IllegalTransactionStateError: In a scope that runs without a transaction, where
                statements have already committed and nothing can be rolled back.
        """
        if self.kind is Kind.NONE:
            raise IllegalTransactionStateError(
                "set_rollback_only() called in a scope that runs without a transaction "
                f"({self.definition.propagation.name}); its statements have already committed.",
                method=self.definition.name,
                propagation=self.definition.propagation.name,
            )
        self.rollback_only = True
        if self.joined:
            self.rollback_only_from_inner = True

    def mark_failed_inner_scope(self) -> None:
        """Record that a joined scope ended with an error that rolls back."""
        self.rollback_only = True
        self.rollback_only_from_inner = True

    def __repr__(self) -> str:
        return (
            f"<Transaction {self.kind.value} {self.definition.propagation.name}"
            f"{' read-only' if self.definition.read_only else ''}"
            f"{' rollback-only' if self.rollback_only else ''}"
            f" of {self.definition.name or 'manager.transaction()'}>"
        )
