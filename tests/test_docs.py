"""Every Python block in README.md and docs/*.md runs, page by page, on SQLite.

The ``python`` blocks of a page are joined, in order, into one script that runs in a fresh
interpreter; it must exit 0 and write nothing to stderr (so no warning either). A block right
after a ``<!-- illustrative -->`` line is left out: it shows a fragment that cannot run on its
own. A page whose blocks are all illustrative must say why in ILLUSTRATIVE_PAGES.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
ILLUSTRATIVE_MARK = "<!-- illustrative -->"

# Pages with Python blocks of which none runs, each with the reason.
ILLUSTRATIVE_PAGES: dict[str, str] = {}

SCRIPT_TIMEOUT = 120


@dataclass(frozen=True, slots=True)
class Block:
    """A fenced ``python`` block of a page."""

    line: int
    code: str
    illustrative: bool


def python_blocks(text: str) -> list[Block]:
    """Return the page's ``python`` blocks in order; fences must start at column 0."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```python" and lines[index].startswith("```"):
            start = index
            previous = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
            index += 1
            body: list[str] = []
            while index < len(lines) and lines[index].rstrip() != "```":
                body.append(lines[index])
                index += 1
            if index == len(lines):
                raise AssertionError(f"unclosed ```python block at line {start + 1}")
            blocks.append(Block(start + 1, "\n".join(body) + "\n", previous == ILLUSTRATIVE_MARK))
        index += 1
    return blocks


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def script_for(page: Path) -> str:
    """Join the page's runnable blocks into one script, each marked with its line."""
    parts = [
        f"# --- {page_id(page)}, line {block.line} ---\n{block.code}"
        for block in python_blocks(page.read_text(encoding="utf-8"))
        if not block.illustrative
    ]
    return "\n".join(parts)


def runnable_pages() -> list[Path]:
    return [page for page in PAGES if script_for(page)]


def run_script(script: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )


def test_there_are_pages() -> None:
    """The docs folder and the README are where the tests expect them."""
    assert (ROOT / "README.md").is_file()
    assert len(PAGES) > 5


@pytest.mark.parametrize("page", runnable_pages(), ids=page_id)
def test_page_runs(page: Path, tmp_path: Path) -> None:
    """The page's Python blocks, joined in order, run as one script without output on stderr."""
    script = tmp_path / "page.py"
    script.write_text(script_for(page), encoding="utf-8")
    result = run_script(script, tmp_path)
    assert result.returncode == 0, f"{page_id(page)} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stderr == "", f"{page_id(page)} wrote to stderr:\n{result.stderr}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page_code_is_checked(page: Path) -> None:
    """A page with Python blocks runs at least one, or says in ILLUSTRATIVE_PAGES why not."""
    text = page.read_text(encoding="utf-8")
    blocks = python_blocks(text)
    name = page_id(page)
    indented = [number for number, line in enumerate(text.splitlines(), 1) if re.match(r"\s+```python", line)]
    assert not indented, f"{name}: indented ```python fences (lines {indented}) would not be run"
    runnable = [block for block in blocks if not block.illustrative]
    if name in ILLUSTRATIVE_PAGES:
        assert blocks, f"{name} is in ILLUSTRATIVE_PAGES but has no Python block"
        assert not runnable, f"{name} is in ILLUSTRATIVE_PAGES but has runnable blocks"
        return
    if blocks:
        assert runnable, f"{name}: no Python block runs; add it to ILLUSTRATIVE_PAGES with a reason"
    if runnable:
        assert "asyncio.run(main())" in runnable[-1].code, (
            f"{name}: the last runnable block (line {runnable[-1].line}) should end with asyncio.run(main())"
        )


def test_block_parser() -> None:
    """The parser finds blocks in order and honours the illustrative mark."""
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            "<!-- illustrative -->",
            "",
            "```python",
            "b = 2",
            "```",
            "```text",
            "not python",
            "```",
        ]
    )
    assert python_blocks(text) == [Block(1, "a = 1\n", False), Block(6, "b = 2\n", True)]


def test_testing_recipe_runs_under_pytest(database_url: str, tmp_path: Path) -> None:
    """The fixtures and tests of docs/testing.md pass under pytest, on SQLite and PostgreSQL."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "test_recipe.py").write_text(script_for(DOCS / "testing.md"), encoding="utf-8")
    (recipe / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n", encoding="utf-8"
    )
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment["TEST_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_recipe.py"],
        cwd=recipe,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert re.search(r"^\d+ passed", result.stdout.splitlines()[-1]), result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1], result.stdout
