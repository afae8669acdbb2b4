"""``@transactional``: declarative transaction boundaries on async methods.

The decorator validates its options when applied and freezes them into a
:class:`~pico_sqlalchemy.transaction.TransactionDefinition`; each call then costs one lookup of
the running manager and the propagation step. Because the wrapper replaces the function itself
(not a proxy around the instance), ``self.other()`` inside a component honours ``other``'s own
declaration.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from .exceptions import DeclarationError, describe
from .manager import SessionManager, _running, running_manager
from .retry import Retry
from .transaction import ExceptionTypes, Propagation, TransactionDefinition

P = ParamSpec("P")
R = TypeVar("R")

TRANSACTIONAL_ATTRIBUTE = "__pico_transactional__"


@overload
def transactional(function: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...


@overload
def transactional(
    *,
    propagation: Propagation | str = ...,
    read_only: bool = ...,
    isolation_level: str | None = ...,
    rollback_for: ExceptionTypes | type[BaseException] = ...,
    no_rollback_for: ExceptionTypes | type[BaseException] = ...,
    timeout: float | None = ...,
    retry: Retry | int | None = ...,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...


def transactional(function: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Run the decorated async function inside a transactional scope.

    Usable bare (``@transactional``) or with keyword options
    (``@transactional(propagation="REQUIRES_NEW")``).

    Args:
        function: The async function or method, when used bare.
        **options: ``propagation`` (a :class:`Propagation` or its name, default REQUIRED),
            ``read_only`` (default False), ``isolation_level`` (default: the engine's),
            ``rollback_for`` and ``no_rollback_for`` (exception classes), ``timeout`` (seconds
            a new physical transaction may run) and ``retry`` (retries after a transient
            failure: a count or a :class:`~pico_sqlalchemy.Retry`).

    Returns:
        The wrapped function, with the original's name, signature and docstring.

    Raises:
        DeclarationError: When applied to a non-async function or given an unknown or
            invalid option; the message names the function.
    """
    if function is not None:
        return _decorate(function, options)
    return lambda target: _decorate(target, options)


_OPTIONS = (
    "propagation",
    "read_only",
    "isolation_level",
    "rollback_for",
    "no_rollback_for",
    "timeout",
    "retry",
)


def definition_for(function: Callable[..., Any], options: dict[str, Any]) -> TransactionDefinition:
    """Validate ``options`` for ``function`` and return the frozen definition."""
    owner = describe(function)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise DeclarationError(
            owner, f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(_OPTIONS)}."
        )
    if not inspect.iscoroutinefunction(function):
        raise DeclarationError(
            owner, "@transactional needs an async function (async def); sync code cannot await the database."
        )
    return TransactionDefinition.build(owner=owner, **options)


def _decorate(function: Callable[..., Any], options: dict[str, Any]) -> Callable[..., Any]:
    if isinstance(function, staticmethod | classmethod):
        raise DeclarationError(
            describe(function.__func__),
            "put @transactional below @staticmethod/@classmethod, directly on the function.",
        )
    definition = definition_for(function, options)
    return bind_definition(function, definition)


def bind_definition(
    function: Callable[..., Awaitable[Any]], definition: TransactionDefinition
) -> Callable[..., Any]:
    """Wrap ``function`` so that each call runs in the scope ``definition`` declares."""

    run = SessionManager.run if definition.retry is None else SessionManager.run_retrying

    @functools.wraps(function)
    async def transactional_call(*args: Any, **kwargs: Any) -> Any:
        manager = _running[-1] if _running else running_manager()  # the latter raises the clear error
        return await run(manager, definition, function, args, kwargs)

    setattr(transactional_call, TRANSACTIONAL_ATTRIBUTE, definition)
    return transactional_call
