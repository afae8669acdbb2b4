"""``@repository``: a container component whose async methods are transactional by default.

Applied once, when the class is defined, it replaces methods on the class itself (not on a
proxy): public ``async def`` methods get a REQUIRED read-write scope, ``@query`` finders are
compiled and get a REQUIRED read-only scope, and methods carrying their own ``@transactional``
keep it. Sync methods, static and class methods, properties and private methods stay as
written. Methods inherited from a plain base class are wrapped for this class too; those of a
parent repository were wrapped already and are left as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

from pico_ioc import component

from .crud import CrudRepository
from .decorators import TRANSACTIONAL_ATTRIBUTE, bind_definition
from .entity import ENTITY_ATTRIBUTE, EntityModel
from .exceptions import DeclarationError, describe
from .plan import finder
from .query import QUERY_ATTRIBUTE, compile_query
from .transaction import TransactionDefinition

C = TypeVar("C", bound=type)

PLAN_ATTRIBUTE = "__pico_query_plan__"
"""Set on a compiled finder; holds its :class:`~pico_sqlalchemy.query.QueryPlan`."""


@overload
def repository(cls: C, /) -> C: ...


@overload
def repository(*, entity: type[Any] | None = None) -> Callable[[C], C]: ...


def repository(cls: Any = None, /, *, entity: type[Any] | None = None) -> Any:
    """Register a class as a repository component of the container.

    Usable bare (``@repository``) or with the entity its ``@query(expr=...)`` finders select
    (``@repository(entity=User)``). A subclass of ``CrudRepository[User]`` takes the entity
    from the type argument; a subclass of another repository inherits its entity.

    Args:
        cls: The class, when used bare.
        entity: The mapped class the repository serves.

    Returns:
        The class itself, registered with pico-ioc under its own key.

    Raises:
        DeclarationError: When the entity is not a mapped class or contradicts the
            ``CrudRepository[...]`` argument, or when a finder is declared wrongly; the message
            names the class or method.
    """
    if cls is not None:
        return _decorate(cls, None)
    return lambda target: _decorate(target, entity)


def _decorate(cls: C, entity: type[Any] | None) -> C:
    owner = describe(cls)
    if not isinstance(cls, type):
        raise DeclarationError(owner, "@repository decorates a class.")
    model = _entity_model(cls, entity, owner)
    # Compile everything first, so that a mistake leaves the class untouched.
    replacements = {
        name: replacement
        for name, attribute in _members(cls)
        if (replacement := _transactional_member(name, attribute, model, cls)) is not None
    }
    if model is not None:
        setattr(cls, ENTITY_ATTRIBUTE, model)
    for name, replacement in replacements.items():
        setattr(cls, name, replacement)
    # component() sets pico-ioc's key on this very class, so a repository that subclasses
    # another one is registered under its own key, not the inherited one.
    registered: C = component(cls)
    return registered


def _entity_model(cls: type, entity: type[Any] | None, owner: str) -> EntityModel | None:
    existing: EntityModel | None = getattr(cls, ENTITY_ATTRIBUTE, None)
    if entity is None:
        if existing is None and issubclass(cls, CrudRepository):
            raise DeclarationError(
                owner,
                "a CrudRepository needs an entity: subclass CrudRepository[Entity] or use "
                "@repository(entity=Entity).",
            )
        return existing
    model = EntityModel.of(entity, owner)
    declared = cls.__dict__.get(ENTITY_ATTRIBUTE)
    if declared is not None and declared.entity is not entity:
        raise DeclarationError(
            owner,
            f"@repository(entity={entity.__name__}) contradicts CrudRepository[{declared.entity.__name__}].",
        )
    return model


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Yield each attribute the class resolves to, own or inherited, once, as stored (not bound)."""
    seen: set[str] = set()
    for klass in cls.__mro__[:-1]:
        for name, attribute in vars(klass).items():
            if name not in seen:
                seen.add(name)
                yield name, attribute


def _transactional_member(name: str, attribute: Any, model: EntityModel | None, cls: type) -> Any:
    if isinstance(attribute, staticmethod | classmethod):
        function = attribute.__func__
        if hasattr(function, QUERY_ATTRIBUTE):
            raise DeclarationError(describe(function), "a @query finder must be an instance method.")
        return None
    if not inspect.isfunction(attribute) or hasattr(attribute, PLAN_ATTRIBUTE):
        return None
    declaration = getattr(attribute, QUERY_ATTRIBUTE, None)
    declared: TransactionDefinition | None = getattr(attribute, TRANSACTIONAL_ATTRIBUTE, None)
    if declaration is not None:
        plan = compile_query(declaration, model, cls)
        definition = declared or TransactionDefinition.build(owner=declaration.owner, read_only=True)
        compiled = bind_definition(finder(plan, declaration.function), definition)
        setattr(compiled, PLAN_ATTRIBUTE, plan)
        return compiled
    if name.startswith("_") or declared is not None or not inspect.iscoroutinefunction(attribute):
        return None
    return bind_definition(attribute, TransactionDefinition.build(owner=describe(attribute)))
