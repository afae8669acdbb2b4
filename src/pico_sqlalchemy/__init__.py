"""pico-sqlalchemy: Spring-style declarative transactions for SQLAlchemy's asyncio sessions."""

from .base import AppBase, Mapped, mapped_column
from .config import DatabaseSettings
from .configurers import DatabaseConfigurer
from .crud import CrudRepository
from .decorators import transactional
from .events import transactional_event_listener
from .exceptions import (
    ConfigurationError,
    ConfigurerError,
    CrossTaskSessionError,
    DeclarationError,
    IllegalTransactionStateError,
    NoActiveSessionError,
    PicoSqlAlchemyError,
    ReadOnlyTransactionError,
    TransactionTimeoutError,
    UnexpectedRollbackError,
    UnknownFieldError,
)
from .manager import SessionManager, TransactionContext, get_session
from .paging import Page, PageRequest, Slice, Sort
from .plan import Record
from .query import query
from .repository import repository
from .retry import Retry
from .synchronization import Outcome, Phase, after_commit, after_completion, after_rollback, before_commit
from .transaction import Propagation, Transaction, TransactionDefinition

__all__ = [
    "AppBase",
    "ConfigurationError",
    "ConfigurerError",
    "CrossTaskSessionError",
    "CrudRepository",
    "DatabaseConfigurer",
    "DatabaseSettings",
    "DeclarationError",
    "IllegalTransactionStateError",
    "Mapped",
    "NoActiveSessionError",
    "Outcome",
    "Page",
    "PageRequest",
    "Phase",
    "PicoSqlAlchemyError",
    "Propagation",
    "ReadOnlyTransactionError",
    "Record",
    "Retry",
    "SessionManager",
    "Slice",
    "Sort",
    "Transaction",
    "TransactionContext",
    "TransactionDefinition",
    "TransactionTimeoutError",
    "UnexpectedRollbackError",
    "UnknownFieldError",
    "after_commit",
    "after_completion",
    "after_rollback",
    "before_commit",
    "get_session",
    "mapped_column",
    "query",
    "repository",
    "transactional",
    "transactional_event_listener",
]
