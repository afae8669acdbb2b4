"""The propagation algorithm: a definition and the running transaction decide what a scope does.

| mode          | no transaction running  | a transaction running                      |
|---------------|-------------------------|--------------------------------------------|
| REQUIRED      | BEGIN                   | JOIN                                       |
| REQUIRES_NEW  | BEGIN                   | BEGIN (the running one is suspended)       |
| NESTED        | BEGIN                   | SAVEPOINT                                  |
| SUPPORTS      | WITHOUT                 | JOIN                                       |
| MANDATORY     | error                   | JOIN                                       |
| NOT_SUPPORTED | WITHOUT                 | WITHOUT (the running one is suspended)     |
| NEVER         | WITHOUT                 | error                                      |

A transaction begun by another task does not count as running: a child task spawned inside a
transaction inherits the context variable, but must not share the parent's session.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from .exceptions import IllegalTransactionStateError
from .transaction import Kind, Propagation, Transaction, TransactionDefinition


class Action(enum.Enum):
    """What a scope does on entry."""

    JOIN = "join"
    BEGIN = "begin"
    SAVEPOINT = "savepoint"
    WITHOUT = "without"


# Looked up once: enum member access costs more than a global, and decide() runs on every call.
_REQUIRED, _REQUIRES_NEW, _NESTED = Propagation.REQUIRED, Propagation.REQUIRES_NEW, Propagation.NESTED
_SUPPORTS, _MANDATORY, _NOT_SUPPORTED = Propagation.SUPPORTS, Propagation.MANDATORY, Propagation.NOT_SUPPORTED
_JOIN, _BEGIN, _SAVEPOINT, _WITHOUT = Action.JOIN, Action.BEGIN, Action.SAVEPOINT, Action.WITHOUT
_NO_TRANSACTION = Kind.NONE


def decide(
    definition: TransactionDefinition, current: Transaction | None, task: asyncio.Task[Any] | None
) -> Action:
    """Return the action for ``definition`` given the ``current`` transaction of ``task``.

    Raises:
        IllegalTransactionStateError: MANDATORY with no transaction, NEVER inside one.
    """
    if current is not None and current.owner is not task:
        current = None
    running = current is not None and current.kind is not _NO_TRANSACTION
    mode = definition.propagation

    if mode is _REQUIRED:
        return _JOIN if running else _BEGIN
    if mode is _REQUIRES_NEW:
        return _BEGIN
    if mode is _NESTED:
        return _SAVEPOINT if running else _BEGIN
    if mode is _SUPPORTS:
        return _JOIN if running or current is not None else _WITHOUT
    if mode is _MANDATORY:
        if running:
            return _JOIN
        raise IllegalTransactionStateError(
            f"{definition.name or 'manager.transaction()'} is MANDATORY but no transaction is "
            "running in this task. Call it from a transactional scope (a task spawned inside a "
            "transaction does not share it).",
            method=definition.name,
            propagation=mode.name,
        )
    if mode is _NOT_SUPPORTED:
        return _WITHOUT if running or current is None else _JOIN
    # NEVER
    if running:
        raise IllegalTransactionStateError(
            f"{definition.name or 'manager.transaction()'} is NEVER but a transaction is running.",
            method=definition.name,
            propagation=mode.name,
        )
    return _WITHOUT if current is None else _JOIN
