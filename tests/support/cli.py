"""The tuneops CLI as a user runs it: a subprocess in the test environment, and its JSON output."""

import json
import os
import subprocess
import sys


def tuneops(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    """Run ``python -m tuneops ARGS`` in the test environment; returns stdout, fails with the output's tail."""
    proc = subprocess.run(
        [sys.executable, "-m", "tuneops", *args], capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode in ok, (
        f"tuneops {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def json_with(stdout: str, key: str) -> dict:
    """The last JSON object printed in ``stdout`` that holds ``key``."""
    decoder, found = json.JSONDecoder(), []
    for start in (i for i, ch in enumerate(stdout) if ch == "{" and (i == 0 or stdout[i - 1] == "\n")):
        try:
            obj, _ = decoder.raw_decode(stdout, start)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and key in obj:
            found.append(obj)
    assert found, f"no JSON object with {key!r} in the output:\n{stdout[-3000:]}"
    return found[-1]
