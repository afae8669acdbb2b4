"""@transactional declarations: both spellings, metadata kept, mistakes caught when applied."""

from __future__ import annotations

import inspect

import pytest

from pico_sqlalchemy import DeclarationError, NoActiveSessionError, Propagation, get_session, transactional
from pico_sqlalchemy.decorators import TRANSACTIONAL_ATTRIBUTE
from pico_sqlalchemy.transaction import TransactionDefinition


class TestSpellings:
    def test_bare_and_called_forms(self) -> None:
        """@transactional and @transactional(...) both wrap and record a definition."""

        @transactional
        async def bare(x: int) -> int:
            """Doc."""
            return x

        @transactional(propagation=Propagation.NESTED, read_only=True)
        async def called(x: int) -> int:
            return x

        assert getattr(bare, TRANSACTIONAL_ATTRIBUTE).propagation is Propagation.REQUIRED
        definition: TransactionDefinition = getattr(called, TRANSACTIONAL_ATTRIBUTE)
        assert (definition.propagation, definition.read_only) == (Propagation.NESTED, True)

    def test_signature_and_metadata_kept(self) -> None:
        """The wrapper keeps name, docstring, signature and is still a coroutine function."""

        @transactional
        async def documented(name: str, *, count: int = 1) -> str:
            """Say hello."""
            return name * count

        assert documented.__name__ == "documented"
        assert documented.__doc__ == "Say hello."
        assert str(inspect.signature(documented)) == "(name: 'str', *, count: 'int' = 1) -> 'str'"
        assert inspect.iscoroutinefunction(documented)

    @pytest.mark.parametrize("name", ["REQUIRES_NEW", "requires_new", " Requires_New "])
    def test_propagation_strings(self, name: str) -> None:
        """Propagation names are accepted as strings in any case."""

        @transactional(propagation=name)
        async def method() -> None: ...

        assert getattr(method, TRANSACTIONAL_ATTRIBUTE).propagation is Propagation.REQUIRES_NEW


def declaration_error(**options: object) -> DeclarationError:
    with pytest.raises(DeclarationError) as caught:

        @transactional(**options)  # type: ignore[call-overload]
        async def place_order() -> None: ...

    return caught.value


class TestMistakes:
    def test_sync_function_refused(self) -> None:
        """A non-async function fails when decorated, naming it."""
        with pytest.raises(DeclarationError) as caught:

            @transactional  # type: ignore[arg-type]
            def sync_work() -> None: ...

        assert "sync_work" in str(caught.value) and "async def" in str(caught.value)
        assert isinstance(caught.value, TypeError)

    @pytest.mark.parametrize(
        ("options", "fragment"),
        [
            ({"propagation": "SOMETIMES"}, "unknown propagation"),
            ({"isolation_level": "SNAPSHOT"}, "unknown isolation_level"),
            ({"isolation_level": "AUTOCOMMIT"}, "use propagation NOT_SUPPORTED"),
            ({"read_only": "yes"}, "read_only"),
            ({"rollback_for": "ValueError"}, "rollback_for takes exception classes"),
            ({"no_rollback_for": (ValueError, 3)}, "no_rollback_for takes exception classes"),
            ({"rollback_for": ValueError, "no_rollback_for": ValueError}, "in both"),
            ({"propogation": "NESTED"}, "unknown option(s) propogation"),
        ],
    )
    def test_bad_option_names_function(self, options: dict[str, object], fragment: str) -> None:
        """A wrong option fails when the decorator is applied, naming the function and the fix."""
        error = declaration_error(**options)
        assert "place_order" in error.target
        assert fragment in str(error)

    def test_misplaced_on_staticmethod(self) -> None:
        """@transactional above @staticmethod says where to put it."""
        with pytest.raises(DeclarationError, match="below @staticmethod"):

            class Service:
                @transactional  # type: ignore[arg-type]
                @staticmethod
                async def run() -> None: ...


async def test_get_session_outside_scope() -> None:
    """get_session() outside every transactional scope says where to call it from."""
    from pico_sqlalchemy import DatabaseSettings, SessionManager

    manager = SessionManager(DatabaseSettings(url="sqlite+aiosqlite://"))
    try:
        with pytest.raises(NoActiveSessionError, match="outside a transactional scope"):
            get_session(manager)
    finally:
        await manager.dispose()
