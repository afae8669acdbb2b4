"""A small web shop on FastAPI: users place orders within a credit limit.

The pico-ioc container, built when the application starts, wires repositories into
transactional services; FastAPI's dependencies hand those services to the routes. Start it with
``python -m examples.shop`` from the repository root (needs uvicorn), or build the application
with :func:`create_app` and serve it with any ASGI server.
"""

from .web import create_app

__all__ = ["create_app"]
