"""pico-ioc's ``transaction`` scope, tied to the physical transactions of a SessionManager.

Components declared with ``@component(scope="transaction")`` get one instance per physical
transaction: joined scopes share it, a REQUIRES_NEW transaction gets its own, and the instance's
``@cleanup`` methods (sync or async) run when the transaction ends.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

from pico_ioc import PicoContainer

SCOPE = "transaction"

_scope_ids = itertools.count(1)


class TransactionScope:
    """Activates and cleans up pico-ioc's ``transaction`` scope for one container."""

    __slots__ = ("_container", "in_use")

    def __init__(self, container: PicoContainer | None) -> None:
        self._container = container
        # Whether any component lives in the scope. The registrations are complete before the
        # container builds its first component, so this is decided once, here.
        self.in_use = container is not None and any(
            (md := container.metadata_for(key)) is not None and md.scope == SCOPE
            for key in container.keys()  # noqa: SIM118 - a container method, not a dict
        )

    def enter(self) -> tuple[int, Any]:
        """Activate a fresh scope id in the current context; return what :meth:`exit` needs."""
        assert self._container is not None
        scope_id = next(_scope_ids)
        return scope_id, self._container.activate_scope(SCOPE, scope_id)

    async def exit(self, entered: tuple[int, Any]) -> None:
        """Deactivate the scope and run the ``@cleanup`` methods of its instances, awaiting async ones."""
        assert self._container is not None
        scope_id, token = entered
        self._container.deactivate_scope(SCOPE, token)
        for instance in self._evict(scope_id):
            for method in _cleanup_methods(instance):
                result = method()
                if inspect.isawaitable(result):
                    await result

    def _evict(self, scope_id: int) -> list[Any]:
        # pico-ioc's public cleanup_scope() calls async @cleanup methods without awaiting them,
        # so the instances are taken from its scope cache here. Kept in this one place.
        buckets = self._container._caches._by_scope.get(SCOPE, {})  # type: ignore[union-attr]
        cache = buckets.pop(scope_id, None)
        return [instance for _, instance in cache.items()] if cache is not None else []


def _cleanup_methods(instance: Any) -> list[Any]:
    methods = []
    for name, attribute in inspect.getmembers_static(type(instance)):
        if getattr(attribute, "_pico_meta", {}).get("cleanup", False):
            methods.append(getattr(instance, name))
    return methods
