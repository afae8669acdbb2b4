"""The ``database`` configuration section, read from pico-ioc config sources.

pico-ioc's tree sources (``DictSource``, ``JsonTreeSource``, ``YamlTreeSource``) supply the
section; environment variables reach it through their ``${ENV:NAME}`` interpolation. The raw
section is read as a plain mapping and validated here, so that a misspelt key fails at start-up
with the list of valid keys instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pico_ioc import configured, provides
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .exceptions import ConfigurationError

DEFAULT_URL = "sqlite+aiosqlite:///pico_sqlalchemy.db"

# AUTOCOMMIT is not among them: a scope that commits each statement is not a transaction, and
# its failure could roll nothing back. Scopes without a transaction get it by propagation.
ISOLATION_LEVELS = frozenset({"READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"})


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for logs and reprs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Validated settings of the ``database`` configuration section.

    Attributes:
        url: SQLAlchemy URL of an async driver; a SQLite file through aiosqlite by default.
        echo: Log every statement through the ``sqlalchemy.engine`` logger.
        pool_size: Connections kept open in the pool (ignored where the pool does not apply).
        max_overflow: Extra connections allowed above ``pool_size`` under load.
        pool_timeout: Seconds to wait for a free connection before failing.
        pool_recycle: Seconds after which a pooled connection is replaced (-1: never).
        pool_pre_ping: Test each connection on checkout and replace it if the server dropped it.
        connect_args: Passed to the driver's ``connect()`` unchanged.
        execution_options: Engine-wide SQLAlchemy execution options.
        isolation_level: Default isolation level of every new transaction, or ``None`` for the
            database's own default.
    """

    url: str = DEFAULT_URL
    echo: bool = False
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: int = -1
    pool_pre_ping: bool = False
    connect_args: Mapping[str, Any] = field(default_factory=dict)
    execution_options: Mapping[str, Any] = field(default_factory=dict)
    isolation_level: str | None = None

    def __post_init__(self) -> None:
        try:
            make_url(self.url)
        except ArgumentError:
            raise ConfigurationError("url", "is not a valid SQLAlchemy URL.") from None
        if self.isolation_level is not None and self.isolation_level not in ISOLATION_LEVELS:
            raise ConfigurationError(
                "isolation_level",
                f"unknown level {self.isolation_level!r}; use one of {sorted(ISOLATION_LEVELS)}.",
            )
        for name in ("pool_size", "max_overflow"):
            if getattr(self, name) < 0:
                raise ConfigurationError(name, "must not be negative.")
        if self.pool_timeout <= 0:
            raise ConfigurationError("pool_timeout", "must be a positive number of seconds.")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={mask_url(self.url)!r}" if f.name == "url" else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"DatabaseSettings({shown})"

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> DatabaseSettings:
        """Build settings from a raw ``database`` section, coercing strings from text sources.

        Raises:
            ConfigurationError: For an unknown key or a value of the wrong type.
        """
        if not isinstance(section, Mapping):
            raise ConfigurationError("", f"the section must be a mapping, got {type(section).__name__}.")
        valid = tuple(f.name for f in fields(cls))
        values: dict[str, Any] = {}
        for key, raw in section.items():
            if key not in valid:
                raise ConfigurationError(str(key), "unknown key.", valid)
            values[key] = _coerce(key, raw, _FIELD_TYPES[key])
        return cls(**values)


_FIELD_TYPES: dict[str, type] = {
    "url": str,
    "echo": bool,
    "pool_size": int,
    "max_overflow": int,
    "pool_timeout": float,
    "pool_recycle": int,
    "pool_pre_ping": bool,
    "connect_args": dict,
    "execution_options": dict,
    "isolation_level": str,
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _coerce(key: str, raw: Any, kind: type) -> Any:
    if key == "isolation_level" and raw is None:
        return None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
    elif kind in (int, float):
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return kind(raw)
        if isinstance(raw, str):
            try:
                return kind(raw.strip())
            except ValueError:
                pass
    elif kind is dict:
        if isinstance(raw, Mapping):
            return dict(raw)
    elif isinstance(raw, str):
        return raw
    raise ConfigurationError(key, f"expected {kind.__name__}, got {raw!r}.")


@configured(prefix="", mapping="tree")
class DatabaseSection:
    """The raw ``database`` section of the configuration tree, before validation.

    pico-ioc builds this from the root of the tree and hands over only the ``database`` key,
    untouched; :func:`database_settings` validates it. Other top-level keys are ignored.
    """

    def __init__(self, database: Any = None) -> None:
        self.values: Mapping[str, Any] = database if database is not None else {}


# pico-ioc's decorators carry no annotations; the functions they mark are fully typed.
@provides(DatabaseSettings)  # type: ignore[untyped-decorator, no-untyped-call]
def database_settings(section: DatabaseSection) -> DatabaseSettings:
    """Provide the validated :class:`DatabaseSettings` to the container."""
    return DatabaseSettings.from_mapping(section.values)
