"""``AppBase``: the declarative base for application models, and its container binding."""

from __future__ import annotations

from pico_ioc import provides
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["AppBase", "Mapped", "app_base", "mapped_column"]


class AppBase(DeclarativeBase):
    """Declarative base for models; its ``metadata`` collects every model's table.

    Models are plain SQLAlchemy 2.x declarative classes. Ask the container for ``AppBase`` (as a
    ``DatabaseConfigurer`` does to create tables) and you get this class itself, never a model:
    the binding is a provider function, so no subclass inherits a component registration.
    """


# pico-ioc's decorators carry no annotations; the function they mark is fully typed.
@provides(AppBase)  # type: ignore[untyped-decorator, no-untyped-call]
def app_base() -> type[AppBase]:
    """Provide the ``AppBase`` class itself to components that ask for it."""
    return AppBase
