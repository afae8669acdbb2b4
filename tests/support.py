"""Pieces shared by the test modules.

A test module imports :class:`CreateTables` so that its container, which scans the module's
names, creates the tables of every model on ``AppBase`` at start-up.
"""

from __future__ import annotations

from pico_ioc import component
from sqlalchemy.ext.asyncio import AsyncEngine

from pico_sqlalchemy import AppBase, DatabaseConfigurer


@component
class CreateTables(DatabaseConfigurer):
    """Creates the tables of all models at start-up."""

    def __init__(self, base: AppBase) -> None:
        self.base = base

    async def configure_database(self, engine: AsyncEngine) -> None:
        async with engine.begin() as connection:
            await connection.run_sync(self.base.metadata.create_all)
