"""The entity a repository serves, seen once: its columns, primary key and ready statements.

Only what the mapper knows from its own class is read here (columns and primary key), never
anything that would configure the mappers: ``@repository`` runs at import time, when models
that relationships point at may not exist yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, func, inspect, select
from sqlalchemy.orm import Mapper

from .exceptions import DeclarationError, UnknownFieldError

if TYPE_CHECKING:
    from .paging import Sort

ENTITY_ATTRIBUTE = "__pico_entity__"
"""Set on a repository class; holds the :class:`EntityModel` of the entity it serves."""


# eq=False: compared and hashed by identity, so a model can key a cache.
@dataclass(frozen=True, slots=True, eq=False)
class EntityModel:
    """A mapped class as repositories use it.

    Attributes:
        entity: The mapped class.
        table: The table it is mapped to (the subclass's own table under joined inheritance).
        columns: Mapped column attributes by attribute name; the only names accepted for
            sorting and ``find_by``.
        primary_key: Attribute names of the primary key, in key order.
        select_all: ``SELECT entity``.
        count: ``SELECT count(*) FROM entity``.
        exists_by_id: ``SELECT EXISTS (... WHERE pk = :pk0 [AND ...])``.
    """

    entity: type[Any]
    table: Table
    columns: Mapping[str, Any]
    primary_key: tuple[str, ...]
    select_all: Any
    count: Any
    exists_by_id: Any

    @staticmethod
    def is_entity(candidate: object) -> bool:
        """Return whether ``candidate`` is a mapped class."""
        return isinstance(candidate, type) and isinstance(inspect(candidate, raiseerr=False), Mapper)

    @classmethod
    def of(cls, entity: object, owner: str) -> EntityModel:
        """Describe ``entity``; errors name ``owner``.

        Raises:
            DeclarationError: When ``entity`` is not a mapped class.
        """
        if not isinstance(entity, type) or not cls.is_entity(entity):
            raise DeclarationError(
                owner, f"entity must be a mapped class (an AppBase subclass with a table), got {entity!r}."
            )
        mapper: Mapper[Any] = inspect(entity)
        columns = dict(mapper.columns.items())
        primary_key = tuple(
            name for column in mapper.primary_key for name, mapped in columns.items() if mapped is column
        )
        table = mapper.local_table
        assert isinstance(table, Table)
        matches = [columns[name] == bindparam(f"pk{i}") for i, name in enumerate(primary_key)]
        return cls(
            entity=entity,
            table=table,
            columns=MappingProxyType(columns),
            primary_key=primary_key,
            select_all=select(entity),
            count=select(func.count()).select_from(entity),
            exists_by_id=select(select(entity).where(*matches).exists()),
        )

    @property
    def name(self) -> str:
        """The entity's class name."""
        return self.entity.__name__

    def column(self, field: str, usage: str = "sort by", columns: Mapping[str, Any] | None = None) -> Any:
        """Return the column for attribute ``field``.

        Raises:
            UnknownFieldError: When ``field`` is not a mapped column attribute.
        """
        lookup = columns if columns is not None else self.columns
        column = lookup.get(field) if isinstance(field, str) else None
        if column is None:
            raise UnknownFieldError(self.name, field, tuple(self.columns), usage)
        return column

    def order_by(
        self, sorts: Iterable[Sort], columns: Mapping[str, Any] | None = None, *, tie_break: bool = True
    ) -> list[Any]:
        """Return ORDER BY terms for ``sorts``, then the primary key for a stable order.

        Args:
            sorts: The requested order, most significant first.
            columns: The columns to order by, when the rows come from a subquery.
            tie_break: Append the primary key columns not already sorted on.

        Raises:
            UnknownFieldError: For a sort field that is not a mapped column attribute.
        """
        terms: list[Any] = []
        seen: set[str] = set()
        for sort in sorts:
            column = self.column(sort.field, "sort by", columns)
            terms.append(column.desc() if sort.descending else column.asc())
            seen.add(sort.field)
        if tie_break:
            terms.extend(
                self.column(name, "sort by", columns).asc() for name in self.primary_key if name not in seen
            )
        return terms

    def identity(self, id: Any) -> dict[str, Any]:
        """Return the ``exists_by_id`` parameters for a key: a value, a tuple or a dict by attribute.

        Raises:
            ValueError: When the key does not match the primary key's shape.
        """
        names = self.primary_key
        if isinstance(id, Mapping):
            values = tuple(id.get(name) for name in names)
        elif isinstance(id, tuple | list):
            values = tuple(id)
        else:
            values = (id,)
        if len(values) != len(names) or any(value is None for value in values):
            raise ValueError(f"{self.name} key {id!r} does not match its primary key ({', '.join(names)}).")
        return {f"pk{i}": value for i, value in enumerate(values)}
