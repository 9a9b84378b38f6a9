"""Validation at scale: 1,000,000 short records, rows per second and peak memory.

Side by side in one run, each in a fresh child process so peak RSS is its own:
  (a) baseline: ``pandas.read_json(lines=True)`` of the whole file (loading only, no checks);
  (b) tuneops: ``validate_batch`` (streaming read, mapping, the full GE suite with token
      lengths from the tiny model's tokenizer, EDA report, publish).
Prints rows/s, peak RSS of each, the ratio, and (b) against the 2 GiB budget.

    .venv/bin/python bench/validate_scale.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_BYTES = 2 * 1024**3

# Each child prints its row count and its own peak RSS (VmHWM, reset at exec; getrusage's
# maxrss is not, and would report the forking parent's size).
HWM = "print([int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
CHILD = {
    "baseline": "import pandas as pd, sys; frame = pd.read_json(sys.argv[1], lines=True); print(len(frame))\n"
    + HWM,
    "tuneops": (
        "import sys; from pathlib import Path\n"
        "from tuneops.config import load_dataset_config\n"
        "from tuneops.core.settings import load_settings\n"
        "from tuneops.core.store import ArtifactStore\n"
        "from tuneops.data.validation import validate_batch\n"
        "s = load_settings()\n"
        "r = validate_batch(sys.argv[1], load_dataset_config('support_tickets'), ArtifactStore.from_settings(s), s.cache_dir)\n"
        "print(r['rows'])\n" + HWM
    ),
}


def run_child(name: str, batch: Path, env: dict) -> dict:
    """Run one measurement in a fresh child process; returns rows, seconds and its peak RSS."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD[name], str(batch)], env=env, stdout=subprocess.PIPE, text=True
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    rows, peak = proc.stdout.strip().splitlines()[-2:]
    return {"rows": int(rows), "seconds": elapsed, "peak_rss": int(peak)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from tuneops.core.sample_data import write_sample_batch
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.models.base_model import resolve_base_model

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "TUNEOPS_HOME": str(Path(tmp) / "home"),
            "GX_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("TUNEOPS_ARTIFACT_ROOT", None)
        os.environ.update(env)
        resolve_base_model("builtin:tiny-llama", ArtifactStore.from_settings(load_settings()))  # not timed
        batch = write_sample_batch(Path(tmp) / f"batch-{args.rows}.jsonl", args.rows, seed=42)
        size = batch.stat().st_size
        results = {name: run_child(name, batch, env) for name in ("baseline", "tuneops")}
    base, ours = results["baseline"], results["tuneops"]
    report = {
        "rows": args.rows,
        "file_mib": round(size / 2**20, 1),
        **{f"{k}_rows_per_s": round(v["rows"] / v["seconds"]) for k, v in results.items()},
        **{f"{k}_peak_rss_mib": round(v["peak_rss"] / 2**20) for k, v in results.items()},
        "peak_rss_ratio_tuneops_vs_baseline": round(ours["peak_rss"] / base["peak_rss"], 2),
        "tuneops_peak_rss_vs_2gib_budget": round(ours["peak_rss"] / BUDGET_BYTES, 2),
    }
    print(json.dumps(report, indent=2))
    return 0 if ours["peak_rss"] < BUDGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
