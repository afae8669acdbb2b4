"""The brief's seed example (shared/reference/seed_example.py) runs unchanged against the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# CI clones the repository beside shared/, so the example sits next to the repository root.
SEED_EXAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "seed_example.py"

EXPECTED_STDOUT = (
    "SERVICE: Checking if user 'alice' exists...\n"
    "SERVICE: Creating new user 'alice'...\n"
    "SERVICE: User created with ID 1\n"
    "SERVICE: Checking if user 'alice' exists...\n"
    "Caught expected error: User 'alice' already exists.\n"
)


@pytest.mark.skipif(not SEED_EXAMPLE.is_file(), reason=f"the seed example is not at {SEED_EXAMPLE}")
def test_seed_example_runs_unchanged(tmp_path: Path) -> None:
    """The example prints its SERVICE lines and the expected error, exits 0 and writes nothing to stderr."""
    result = subprocess.run(
        [sys.executable, str(SEED_EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == EXPECTED_STDOUT
