"""examples/quickstart.py runs on SQLite and PostgreSQL, and the README shows it as it is."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from test_docs import python_blocks

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.py"

EXPECTED_OUTPUT = "".join(
    [
        "refused: bob cannot pay 500\n",
        "balances: {'alice': 70, 'bob': 50}\n",
        "audit entries: 2\n",
    ]
)


def run_quickstart(cwd: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if database_url is not None:
        environment["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, str(QUICKSTART)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def quickstart_body() -> str:
    """The quickstart without its module docstring: what the README shows."""
    source = QUICKSTART.read_text(encoding="utf-8")
    docstring = ast.parse(source).body[0]
    assert isinstance(docstring, ast.Expr), "the quickstart should open with a docstring"
    assert docstring.end_lineno is not None
    return "\n".join(source.splitlines()[docstring.end_lineno :]).strip() + "\n"


def test_quickstart_runs_on_default_sqlite(tmp_path: Path) -> None:
    """Without DATABASE_URL the quickstart runs on in-memory SQLite and leaves no file behind."""
    result = run_quickstart(tmp_path, None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == EXPECTED_OUTPUT
    assert list(tmp_path.iterdir()) == []


def test_quickstart_runs_on_each_backend(database_url: str, tmp_path: Path) -> None:
    """With DATABASE_URL the quickstart runs on that database, SQLite file or PostgreSQL."""
    result = run_quickstart(tmp_path, database_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == EXPECTED_OUTPUT


def test_quickstart_runs_twice(database_url: str, tmp_path: Path) -> None:
    """A second run on the same database gives the same output (it starts from empty tables)."""
    for _ in range(2):
        result = run_quickstart(tmp_path, database_url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == EXPECTED_OUTPUT


def test_readme_shows_the_quickstart() -> None:
    """The README's first Python block is examples/quickstart.py, word for word."""
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "README.md has no Python block"
    assert blocks[0].code.strip() + "\n" == quickstart_body()
