"""The public API keeps its types through the decorators; mypy checks this file in CI.

At run time ``assert_type`` returns its argument, so the test only proves the file imports and
runs; the real check is ``mypy --strict tests/test_typing.py`` in ``.ci/run``.
"""

from __future__ import annotations

from typing import assert_type

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pico_sqlalchemy import (
    DatabaseSettings,
    Propagation,
    Retry,
    SessionManager,
    Transaction,
    TransactionContext,
    get_session,
    transactional,
)


@transactional
async def bare(name: str, count: int = 1) -> list[str]:
    return [name] * count


@transactional(propagation=Propagation.REQUIRES_NEW, read_only=True, timeout=2.5, retry=Retry(retries=2))
async def configured(identifier: int) -> str | None:
    return str(identifier)


async def uses_the_api(manager: SessionManager) -> None:
    assert_type(await bare("a"), list[str])
    assert_type(await configured(3), str | None)
    assert_type(manager.engine, AsyncEngine)
    assert_type(manager.transaction(propagation="NESTED"), TransactionContext)
    async with manager.transaction() as tx:
        assert_type(tx, Transaction)
        assert_type(tx.session, AsyncSession)
        assert_type(get_session(), AsyncSession)
    assert_type(manager.current, Transaction | None)
    assert_type(manager.settings, DatabaseSettings)


def test_module_imports_and_types_hold_at_run_time() -> None:
    """The decorated functions are still coroutine functions with their names."""
    assert bare.__name__ == "bare"
    assert configured.__name__ == "configured"
