"""Callbacks tied to the outcome of the running transaction.

``before_commit`` callbacks run just before the physical commit, inside the transaction (they
may still write). ``after_commit`` callbacks run only once the physical transaction has really
committed, never when a joined scope ends or a savepoint is released; ``after_rollback`` once it
rolled back; ``after_completion`` after either, with the :class:`Outcome`. Callbacks may be sync
or async and run in registration order.

A failing ``before_commit`` callback rolls the transaction back and its error propagates. The
outcome of a finished transaction cannot change any more, so an error in an after-phase callback
is logged on the ``pico_sqlalchemy`` logger and the remaining callbacks still run; the caller
gets its result. Callbacks registered inside a savepoint that is rolled back are dropped with it.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Callable
from typing import Any

from .exceptions import IllegalTransactionStateError
from .transaction import Kind, Transaction

logger = logging.getLogger("pico_sqlalchemy")


class Phase(enum.Enum):
    """When a callback runs, relative to the end of the physical transaction."""

    BEFORE_COMMIT = "before_commit"
    AFTER_COMMIT = "after_commit"
    AFTER_ROLLBACK = "after_rollback"
    AFTER_COMPLETION = "after_completion"


class Outcome(enum.Enum):
    """How a physical transaction ended; passed to ``after_completion`` callbacks."""

    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"


Callback = Callable[..., Any]


def register(phase: Phase, callback: Callback, tx: Transaction | None = None) -> None:
    """Register ``callback`` for ``phase`` on ``tx``, by default the transaction running in this task.

    Raises:
        IllegalTransactionStateError: Outside a transaction (a non-transactional scope has no
            commit to wait for).
    """
    if tx is None:
        from .manager import current_transaction  # the manager imports this module

        tx = current_transaction()
    if tx is None or tx.kind is Kind.NONE:
        raise IllegalTransactionStateError(
            f"{phase.value}() needs a running transaction; call it from a transactional scope."
        )
    if tx.synchronizations is None:
        tx.synchronizations = []
    tx.synchronizations.append((phase, callback))


def before_commit(callback: Callback) -> None:
    """Run ``callback()`` just before the running transaction commits."""
    register(Phase.BEFORE_COMMIT, callback)


def after_commit(callback: Callback) -> None:
    """Run ``callback()`` once the running transaction has committed."""
    register(Phase.AFTER_COMMIT, callback)


def after_rollback(callback: Callback) -> None:
    """Run ``callback()`` once the running transaction has rolled back."""
    register(Phase.AFTER_ROLLBACK, callback)


def after_completion(callback: Callback) -> None:
    """Run ``callback(outcome)`` once the running transaction has ended either way."""
    register(Phase.AFTER_COMPLETION, callback)


async def run_before_commit(tx: Transaction) -> None:
    """Run the ``before_commit`` callbacks; an error propagates (and the transaction rolls back)."""
    for phase, callback in tx.synchronizations or ():
        if phase is Phase.BEFORE_COMMIT:
            result = callback()
            if inspect.isawaitable(result):
                await result


async def run_after_completion(tx: Transaction, outcome: Outcome) -> None:
    """Run the after-phase callbacks matching ``outcome``; log their errors and carry on."""
    wanted = Phase.AFTER_COMMIT if outcome is Outcome.COMMITTED else Phase.AFTER_ROLLBACK
    for phase, callback in tx.synchronizations or ():
        if phase is not wanted and phase is not Phase.AFTER_COMPLETION:
            continue
        try:
            result = callback(outcome) if phase is Phase.AFTER_COMPLETION else callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception(
                "%s callback %r failed after the transaction %s; the outcome stands.",
                phase.value,
                callback,
                outcome.value,
            )
