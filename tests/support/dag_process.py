"""Run a DAG with dag.test() in a fresh Python process and report what that process imported.

dag.test() runs every task in the process that calls it, so a fresh process whose run imports no
torch proves that no task of the DAG loaded model weights in the worker: only the model jobs (the
trainer and ``python -m tuneops.jobs``, their own subprocesses) did.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
#: What loading or running a model needs; none of it may be imported by a task process.
MODEL_MODULES = ("torch", "transformers", "peft", "safetensors", "accelerate", "trl")

_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from scripts.demo import load_dags
run = load_dags()[sys.argv[1]].test(run_conf=json.loads(sys.argv[2]))
model = sorted(m for m in sys.modules if m.split(".")[0] in {modules!r})
print("\\nDAG-PROCESS " + json.dumps({{"run_id": run.run_id, "state": str(run.state), "model_modules": model}}))
"""


def run_dag_in_fresh_process(dag_id: str, conf: dict | None = None, timeout: float = 1200) -> SimpleNamespace:
    """``dag_id`` run once with ``conf``; returns ``run_id``, ``state`` and the ``model_modules`` the run's
    process imported. Its log goes to this process's stderr, so a failure shows it."""
    script = _SCRIPT.format(repo=str(REPO), modules=MODEL_MODULES)
    proc = subprocess.run(
        [sys.executable, "-c", script, dag_id, json.dumps(conf or {})],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    sys.stderr.write(proc.stdout[-20000:] + proc.stderr[-20000:])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAG-PROCESS ")]
    assert proc.returncode == 0 and lines, f"{dag_id} did not run (exit {proc.returncode}); its log is above"
    return SimpleNamespace(**json.loads(lines[-1][len("DAG-PROCESS ") :]))
