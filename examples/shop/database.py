"""Start-up: create the shop's tables before the first request."""

from pico_ioc import component
from sqlalchemy.ext.asyncio import AsyncEngine

from pico_sqlalchemy import AppBase, DatabaseConfigurer

from .models import TABLES


@component
class CreateTables(DatabaseConfigurer):
    """Creates the shop's tables when missing; a real service would run its migrations here."""

    def __init__(self, base: AppBase) -> None:
        self.base = base

    async def configure_database(self, engine: AsyncEngine) -> None:
        # Only the shop's own tables: AppBase.metadata holds every model imported in the process.
        tables = [self.base.metadata.tables[name] for name in TABLES]
        async with engine.begin() as connection:
            await connection.run_sync(self.base.metadata.create_all, tables=tables)
