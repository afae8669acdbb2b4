"""Event listeners that wait for the transaction the event was published in.

``@transactional_event_listener(OrderPlaced, phase=Phase.AFTER_COMMIT)`` subscribes a method of
an ``AutoSubscriberMixin`` component to pico-ioc's ``EventBus``, like ``@subscribe``. When the
event is published (``await bus.publish(event)``) inside a transaction, the handler is not run
there and then: it is registered on the transaction and runs at ``phase``, so an e-mail goes out
only once the row it announces is committed. Published outside a transaction, the event is
dropped for this listener unless it says ``fallback_execution=True``, in which case it runs at
once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from pico_ioc import Event, ExecPolicy, subscribe

from .exceptions import DeclarationError, describe
from .manager import current_transaction
from .synchronization import Phase, register
from .transaction import Kind

F = TypeVar("F", bound=Callable[..., Any])


def transactional_event_listener(
    event_type: type[Event],
    *,
    phase: Phase | str = Phase.AFTER_COMMIT,
    fallback_execution: bool = False,
    priority: int = 0,
) -> Callable[[F], F]:
    """Subscribe a handler that runs at ``phase`` of the transaction the event was published in.

    Args:
        event_type: The pico-ioc ``Event`` subclass to listen for.
        phase: ``AFTER_COMMIT`` (default), ``AFTER_ROLLBACK``, ``AFTER_COMPLETION`` or
            ``BEFORE_COMMIT``; a :class:`Phase` or its name.
        fallback_execution: Run the handler at once when the event is published outside a
            transaction, instead of dropping it.
        priority: Passed to the event bus; higher runs first among listeners of one event.

    Raises:
        DeclarationError: For an unknown phase, when the decorator is applied.
    """

    def decorate(handler: F) -> F:
        owner = describe(handler)
        try:
            when = phase if isinstance(phase, Phase) else Phase[str(phase).upper()]
        except KeyError:
            raise DeclarationError(
                owner, f"unknown phase {phase!r}; use one of {', '.join(Phase.__members__)}."
            ) from None

        @functools.wraps(handler)
        async def on_event(*args: Any) -> None:
            tx = current_transaction()
            if tx is None or tx.kind is Kind.NONE:
                if fallback_execution:
                    await _call(handler, args)
                return
            if when is Phase.AFTER_COMPLETION:
                register(when, lambda outcome: _call(handler, args), tx)
            else:
                register(when, lambda: _call(handler, args), tx)

        # Inline, so the listener runs in the publishing task, where its transaction is.
        return subscribe(event_type, priority=priority, policy=ExecPolicy.INLINE)(on_event)  # type: ignore[return-value]

    return decorate


async def _call(handler: Callable[..., Any], args: tuple[Any, ...]) -> None:
    result = handler(*args)
    if inspect.isawaitable(result):
        await result
