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


def decide(
    definition: TransactionDefinition, current: Transaction | None, task: asyncio.Task[Any] | None
) -> Action:
    """Return the action for ``definition`` given the ``current`` transaction of ``task``.

    Raises:
        IllegalTransactionStateError: MANDATORY with no transaction, NEVER inside one.
    """
    if current is not None and current.owner is not task:
        current = None
    running = current is not None and current.kind is not Kind.NONE
    mode = definition.propagation

    if mode is Propagation.REQUIRED:
        return Action.JOIN if running else Action.BEGIN
    if mode is Propagation.REQUIRES_NEW:
        return Action.BEGIN
    if mode is Propagation.NESTED:
        return Action.SAVEPOINT if running else Action.BEGIN
    if mode is Propagation.SUPPORTS:
        return Action.JOIN if running or current is not None else Action.WITHOUT
    if mode is Propagation.MANDATORY:
        if running:
            return Action.JOIN
        raise IllegalTransactionStateError(
            f"{definition.name or 'manager.transaction()'} is MANDATORY but no transaction is "
            "running in this task. Call it from a transactional scope (a task spawned inside a "
            "transaction does not share it).",
            method=definition.name,
            propagation=mode.name,
        )
    if mode is Propagation.NOT_SUPPORTED:
        return Action.WITHOUT if running or current is None else Action.JOIN
    # NEVER
    if running:
        raise IllegalTransactionStateError(
            f"{definition.name or 'manager.transaction()'} is NEVER but a transaction is running.",
            method=definition.name,
            propagation=mode.name,
        )
    return Action.WITHOUT if current is None else Action.JOIN
