"""``CrudRepository[Entity]``: the reads and writes every repository needs, with no code.

Subclass it with the entity as type argument and decorate the subclass with ``@repository``::

    @repository
    class UserRepository(CrudRepository[User]):
        @query(expr="username = :username")
        async def find_by_username(self, username: str) -> User | None: ...

Reads run in a REQUIRED read-only scope, writes in a REQUIRED read-write one, so each joins a
caller's transaction. Writes flush at once: generated keys are set when ``save`` returns and
constraint violations surface from the call that caused them.

``CrudRepository`` is not a component itself; only the decorated subclasses are.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import inspect

from .decorators import transactional
from .entity import ENTITY_ATTRIBUTE, EntityModel
from .exceptions import DeclarationError, describe
from .manager import get_session
from .paging import Page, PageRequest, Paging, Sort

E = TypeVar("E")


class CrudRepository(Generic[E]):
    """Generic base of repositories: ``get``, ``find_by``, ``find_all``, ``save``, ``delete``, ...

    The entity comes from the type argument (``CrudRepository[User]``) or from
    ``@repository(entity=User)``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        entity = _type_argument(cls)
        if entity is not None:
            setattr(cls, ENTITY_ATTRIBUTE, EntityModel.of(entity, describe(cls)))

    def _model(self) -> EntityModel:
        model: EntityModel | None = getattr(type(self), ENTITY_ATTRIBUTE, None)
        if model is None:
            raise DeclarationError(
                describe(type(self)), "a CrudRepository needs an entity: subclass CrudRepository[Entity]."
            )
        return model

    @transactional(read_only=True)
    async def get(self, id: Any) -> E | None:
        """Return the entity with primary key ``id`` (a tuple or dict for composite keys), or ``None``.

        An instance already in the transaction's session is returned without a query.
        """
        entity: E | None = await get_session().get(self._model().entity, id)
        return entity

    @transactional(read_only=True)
    async def find_by(self, **equals: Any) -> list[E]:
        """Return the entities whose columns equal the given values, in primary key order.

        ``None`` matches NULL. ``find_by()`` with no filter returns every row.

        Raises:
            UnknownFieldError: For a name that is not a mapped column attribute, before any SQL.
        """
        model = self._model()
        conditions = []
        for field, value in equals.items():
            column = model.column(field, "filter by")
            conditions.append(column.is_(None) if value is None else column == value)
        statement = model.select_all.where(*conditions).order_by(*model.order_by(()))
        return list((await get_session().scalars(statement)).all())

    @overload
    async def find_all(self, request: None = None, *, sorts: Sequence[Sort | str] = ()) -> list[E]: ...

    @overload
    async def find_all(self, request: PageRequest) -> Page[E]: ...

    @transactional(read_only=True)
    async def find_all(
        self, request: PageRequest | None = None, *, sorts: Sequence[Sort | str] = ()
    ) -> list[E] | Page[E]:
        """Return every entity, or one page of them when given a :class:`PageRequest`.

        Args:
            request: The page to read; its ``sorts`` order the rows.
            sorts: Order of the full list (without a request); the primary key breaks ties.

        Raises:
            UnknownFieldError: For a sort field that is not a mapped column, before any SQL.
            ValueError: When both a request and ``sorts`` are given.
        """
        paging = _paging(self._model())
        session = get_session()
        if request is not None:
            if sorts:
                raise ValueError("find_all() takes the sorts from the PageRequest; do not pass sorts= too.")
            page: Page[E] = await paging.page(session, request, {})
            return page
        statement = paging.ordered(PageRequest(sorts=sorts).sorts)
        return list((await session.scalars(statement)).all())

    @transactional
    async def save(self, entity: E) -> E:
        """Add or update ``entity`` and flush, so generated keys are set on return.

        Returns:
            The saved entity: ``entity`` itself, or the session's copy of it when ``entity``
            was detached (loaded by an earlier transaction).

        Raises:
            TypeError: When ``entity`` is not an instance of the repository's entity.
        """
        session = get_session()
        saved = await self._attach(entity)
        await session.flush()
        return saved

    @transactional
    async def save_all(self, entities: Iterable[E]) -> list[E]:
        """Add or update every entity with a single flush; return them as :meth:`save` does."""
        saved = [await self._attach(entity) for entity in entities]
        await get_session().flush()
        return saved

    @transactional
    async def delete(self, entity: E) -> None:
        """Delete ``entity`` and flush.

        Raises:
            sqlalchemy.exc.InvalidRequestError: When ``entity`` was never saved.
        """
        session = get_session()
        attached = await self._attach(entity, add=False)
        await session.delete(attached)
        await session.flush()

    @transactional(read_only=True)
    async def count(self) -> int:
        """Return the number of rows of the entity's table."""
        count: int = (await get_session().execute(self._model().count)).scalar_one()
        return count

    @transactional(read_only=True)
    async def exists(self, id: Any) -> bool:
        """Return whether a row with primary key ``id`` exists.

        Raises:
            ValueError: When ``id`` does not match the shape of the primary key.
        """
        model = self._model()
        found: bool = (await get_session().execute(model.exists_by_id, model.identity(id))).scalar_one()
        return found

    async def _attach(self, entity: E, *, add: bool = True) -> E:
        model = self._model()
        if not isinstance(entity, model.entity):
            raise TypeError(f"{type(self).__name__} stores {model.name}, got {type(entity).__name__}.")
        session = get_session()
        if inspect(entity).detached:
            # add() would refuse it if the session already holds that row; merge copies its
            # state onto the session's instance instead.
            return await session.merge(entity)
        if add:
            session.add(entity)
        return entity


def _type_argument(cls: type) -> type[Any] | None:
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, CrudRepository):
            for argument in typing.get_args(base):
                if EntityModel.is_entity(argument):
                    entity: type[Any] = argument
                    return entity
    return None


@functools.cache
def _paging(model: EntityModel) -> Paging:
    return Paging.over_entity(model)
