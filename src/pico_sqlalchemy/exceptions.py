"""The error hierarchy of pico-sqlalchemy.

Every error the library raises derives from :class:`PicoSqlAlchemyError`, and each leaf also
derives from the builtin that matches its meaning, so ``except TypeError`` around a bad
declaration or ``except LookupError`` around a missing session keeps working.

SQLAlchemy's own errors (``IntegrityError``, ``OperationalError``, ...) are never wrapped: they
propagate unchanged once the transaction has been rolled back.
"""

from __future__ import annotations

from typing import Any


class PicoSqlAlchemyError(Exception):
    """Root of every error raised by pico-sqlalchemy."""


class DeclarationError(PicoSqlAlchemyError, TypeError):
    """A decorator or configuration was declared wrongly.

    Raised when the decorator is applied or the container starts, never on a call.

    Attributes:
        target: Qualified name of the function, class or setting at fault.
    """

    def __init__(self, target: str, problem: str) -> None:
        super().__init__(f"{target}: {problem}")
        self.target = target
        self.problem = problem


class ConfigurationError(PicoSqlAlchemyError, ValueError):
    """The ``database`` configuration holds an unknown key or an invalid value.

    Attributes:
        key: The offending key, as written under ``database``.
        valid_keys: Every key the ``database`` section accepts.
    """

    def __init__(self, key: str, problem: str, valid_keys: tuple[str, ...] = ()) -> None:
        message = f"database.{key}: {problem}"
        if valid_keys:
            message += f" Valid keys: {', '.join(valid_keys)}."
        super().__init__(message)
        self.key = key
        self.valid_keys = valid_keys


class NoActiveSessionError(PicoSqlAlchemyError, LookupError):
    """``get_session()`` was called where no transactional scope is running."""


class IllegalTransactionStateError(PicoSqlAlchemyError, RuntimeError):
    """The propagation mode forbids the current state (MANDATORY without, NEVER with a transaction).

    Attributes:
        method: Qualified name of the method whose declaration was violated (``None`` for
            ``manager.transaction()``).
        propagation: Name of the propagation mode.
    """

    def __init__(self, message: str, *, method: str | None = None, propagation: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.propagation = propagation


class UnexpectedRollbackError(PicoSqlAlchemyError, RuntimeError):
    """The transaction was rolled back although its outermost scope returned normally.

    An inner scope that joined the transaction failed and marked it rollback-only; the caller
    caught that error and carried on, so nothing was committed.

    Attributes:
        method: Qualified name of the outermost scope that tried to commit, if known.
    """

    def __init__(self, method: str | None) -> None:
        where = f" in {method}" if method else ""
        super().__init__(
            f"Transaction rolled back{where} because it was marked rollback-only: an inner "
            "transactional scope failed and its error was caught. Nothing was committed."
        )
        self.method = method


class TransactionTimeoutError(PicoSqlAlchemyError, TimeoutError):
    """A transaction ran longer than its ``timeout``; it was rolled back and its connection returned.

    Attributes:
        method: Qualified name of the scope that declared the timeout, if known.
        timeout: The limit, in seconds.
    """

    def __init__(self, method: str | None, timeout: float) -> None:
        where = method or "manager.transaction()"
        super().__init__(f"Transaction of {where} exceeded its timeout of {timeout:g} s and was rolled back.")
        self.method = method
        self.timeout = timeout


class ReadOnlyTransactionError(PicoSqlAlchemyError, RuntimeError):
    """A write was attempted inside a read-only transaction.

    Attributes:
        statement: Short description of the refused write.
    """

    def __init__(self, statement: str) -> None:
        super().__init__(
            f"Refused to write ({statement}) in a read-only transaction; "
            "declare the scope with read_only=False to write."
        )
        self.statement = statement


class CrossTaskSessionError(PicoSqlAlchemyError, RuntimeError):
    """A task used a session that belongs to the transaction of another task.

    An ``AsyncSession`` is not safe to share between concurrent tasks: their statements would
    interleave on one connection and one task's failure would roll back the other's work.

    Attributes:
        owner: Name of the task that owns the session.
        current: Name of the task that tried to use it.
    """

    def __init__(self, owner: str, current: str) -> None:
        super().__init__(
            f"Task {current!r} used the session of a transaction owned by task {owner!r}. "
            "Sessions are not shared between tasks: a child task gets its own transaction when "
            "it calls a @transactional method; pass data between tasks, not sessions."
        )
        self.owner = owner
        self.current = current


class ConfigurerError(PicoSqlAlchemyError, RuntimeError):
    """A ``DatabaseConfigurer`` failed while the container was starting.

    Attributes:
        configurer: Class name of the configurer that failed.
    """

    def __init__(self, configurer: str, cause: BaseException) -> None:
        super().__init__(f"DatabaseConfigurer {configurer} failed during start-up: {cause!r}")
        self.configurer = configurer


class UnknownFieldError(PicoSqlAlchemyError, ValueError):
    """A sort or a ``find_by`` filter named something that is not a mapped column of the entity.

    Raised before any SQL runs, so a field name taken from user input never reaches a statement.

    Attributes:
        entity: Name of the entity class.
        field: The offending name, as given.
        valid_fields: The mapped column attributes that are accepted.
    """

    def __init__(
        self, entity: str, field: str, valid_fields: tuple[str, ...], usage: str = "sort by"
    ) -> None:
        super().__init__(
            f"Cannot {usage} {field!r}: it is not a mapped column of {entity}. "
            f"Valid fields: {', '.join(valid_fields)}."
        )
        self.entity = entity
        self.field = field
        self.valid_fields = valid_fields


def describe(obj: Any) -> str:
    """Return a readable qualified name for error messages."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{module}.{qualname}" if module and module != "builtins" else str(qualname)
