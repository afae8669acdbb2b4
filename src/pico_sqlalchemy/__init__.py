"""pico-sqlalchemy: Spring-style declarative transactions for SQLAlchemy's asyncio sessions."""

from .base import AppBase, Mapped, mapped_column
from .config import DatabaseSettings
from .configurers import DatabaseConfigurer
from .decorators import transactional
from .exceptions import (
    ConfigurationError,
    ConfigurerError,
    CrossTaskSessionError,
    DeclarationError,
    IllegalTransactionStateError,
    NoActiveSessionError,
    PicoSqlAlchemyError,
    ReadOnlyTransactionError,
    UnexpectedRollbackError,
)
from .manager import SessionManager, TransactionContext, get_session
from .transaction import Propagation, Transaction, TransactionDefinition

__all__ = [
    "AppBase",
    "ConfigurationError",
    "ConfigurerError",
    "CrossTaskSessionError",
    "DatabaseConfigurer",
    "DatabaseSettings",
    "DeclarationError",
    "IllegalTransactionStateError",
    "Mapped",
    "NoActiveSessionError",
    "PicoSqlAlchemyError",
    "Propagation",
    "ReadOnlyTransactionError",
    "SessionManager",
    "Transaction",
    "TransactionContext",
    "TransactionDefinition",
    "UnexpectedRollbackError",
    "get_session",
    "mapped_column",
    "transactional",
]
