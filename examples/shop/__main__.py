"""``python -m examples.shop [--host HOST] [--port PORT]``: serve the shop with uvicorn."""

import argparse

from . import create_app

DESCRIPTION = (
    "Serve the example shop with uvicorn. The database is DATABASE_URL if set, "
    "else shop.db (SQLite) in the working directory."
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.shop", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args()
    try:
        import uvicorn
    except ImportError:
        parser.exit(1, 'uvicorn is needed to serve the shop: pip install -e ".[examples]"\n')
    uvicorn.run(create_app(), host=arguments.host, port=arguments.port)


if __name__ == "__main__":
    main()
