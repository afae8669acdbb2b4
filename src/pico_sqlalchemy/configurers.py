"""Start-up hooks that prepare the database: create tables, run migrations, load seed data.

A configurer is any component that subclasses :class:`DatabaseConfigurer` and defines
``configure_database(engine)`` or ``configure(engine)``, sync or async. They run once, when the
container starts, in ascending ``priority``.

The hooks run on an event loop of their own (a sync hook may even call ``asyncio.run``), in a
worker thread when ``init()`` is called from inside a running loop. They get an engine whose
connections are opened and closed within that loop, so nothing bound to it leaks into the
application's pool; for in-memory SQLite it is the application's engine, as a second engine
would see a different, empty database.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

from pico_ioc import component
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import create_engine, is_memory_sqlite
from .exceptions import ConfigurerError, DeclarationError, describe
from .manager import SessionManager

_HOOK_NAMES = ("configure_database", "configure")


class DatabaseConfigurer:
    """Base class of start-up hooks; subclass it and register the subclass with ``@component``.

    Attributes:
        priority: Lower runs first; configurers with equal priority keep their discovery order.
    """

    priority: int = 0


def _hook(configurer: DatabaseConfigurer) -> Callable[[AsyncEngine], Any]:
    for name in _HOOK_NAMES:
        hook = getattr(configurer, name, None)
        if callable(hook):
            return hook  # type: ignore[no-any-return]
    raise DeclarationError(
        describe(type(configurer)),
        "a DatabaseConfigurer needs a configure_database(engine) or configure(engine) method.",
    )


def run_configurers(manager: SessionManager, configurers: list[DatabaseConfigurer]) -> None:
    """Run every configurer once, in ascending priority, whether or not a loop is running here.

    Raises:
        ConfigurerError: When a hook raises; the message names the configurer. The manager is
            disposed first: the container that failed to start cannot clean it up, and later
            ``@transactional`` calls must not pick it up.
    """
    if not configurers:
        return
    ordered = sorted(configurers, key=lambda configurer: configurer.priority)
    hooks = [(configurer, _hook(configurer)) for configurer in ordered]
    shared = is_memory_sqlite(make_url(manager.settings.url))
    engine = manager.engine if shared else create_engine(manager.settings, pooled=False)

    def run_all() -> None:
        for configurer, hook in hooks:
            try:
                if inspect.iscoroutinefunction(hook):
                    asyncio.run(hook(engine))
                else:
                    result = hook(engine)
                    if inspect.isawaitable(result):
                        asyncio.run(_wait(result))
            except Exception as error:
                # On this loop, where the in-memory database's connection was opened.
                asyncio.run(manager.dispose())
                raise ConfigurerError(type(configurer).__name__, error) from error

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run_all()
    else:
        _in_thread(run_all)
    finally:
        if not shared:
            # A NullPool keeps no connection, so there is nothing to close on a loop.
            engine.sync_engine.dispose()


async def _wait(awaitable: Any) -> None:
    await awaitable


def _in_thread(work: Callable[[], None]) -> None:
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name="pico-sqlalchemy-configurers")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@component
class DatabaseStartup:
    """Runs the configurers when the container starts; holds nothing afterwards."""

    def __init__(self, manager: SessionManager, configurers: list[DatabaseConfigurer]) -> None:
        run_configurers(manager, configurers)
