"""The code passes ruff, including Airflow's AIR rules, and is ruff-formatted (the same checks as `make lint`)."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"#\s*fmt:\s*(skip|off)\s*$")
REASONED = re.compile(r"#[^#]*[a-z][^#]*#\s*fmt:\s*(skip|off)\s*$")
LINTED = ("dags", "include", "plugins", "tests", "scripts", "bench")


def test_ruff_finds_nothing():
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *LINTED],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_code_is_formatted():
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *LINTED], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_unexplained_format_skips():
    """``# fmt: skip`` / ``# fmt: off`` only after a comment that says why (``# aligned table  # fmt: skip``)."""
    bare = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in LINTED
        for path in (REPO / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if MARKER.search(line) and not REASONED.search(line)
    ]
    assert not bare, f"format markers without a reason: {bare}"
