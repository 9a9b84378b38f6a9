"""Serving throughput and latency: the REST endpoint with and without request batching, on CPU.

Side by side in one run: the same registered model (the project's tiny-llama base, built
and registered in a temporary ``TUNEOPS_HOME``, not timed), the same requests, served by
``tuneops.serving.app`` under uvicorn on loopback, once with ``max_batch_size=1`` (every request
generated alone) and once with ``--batch-size`` (requests that arrive while the model is
busy share one ``generate`` call). ``--clients`` threads each send ``--requests`` POST
/generate calls back to back (sample tickets as template ``inputs``, ``max_new_tokens``
``--max-new-tokens``, greedy). Each mode runs ``--repeats`` times, alternating which goes
first; the medians are compared.

Prints requests/s, client-side latency p50/p95 and the mean batch size the server reported,
per mode, and the ratios. Every answer must be a 200.

    .venv/bin/python bench/serving_batching.py [--clients 16] [--requests 8] [--batch-size 16] [--max-new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def register_tiny_llama(name: str) -> None:
    import mlflow

    from tuneops.config import Decoding, load_template
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.core.tracking import configure_mlflow
    from tuneops.models.base_model import resolve_base_model
    from tuneops.registry.registry import log_text_generator, registry_client

    settings = load_settings()
    path = resolve_base_model("builtin:tiny-llama", ArtifactStore.from_settings(settings))
    configure_mlflow(settings)
    with mlflow.start_run(run_name="bench-serving"):
        version = log_text_generator(
            name,
            Path(path),
            template=load_template("triage_v1"),
            max_new_tokens=32,
            decoding=Decoding(),
            model_card="tiny-llama base, for the serving benchmark",
        )
    registry_client(settings).set_registered_model_alias(name, "champion", version)


def run_load(url: str, inputs: list[dict], clients: int, per_client: int, max_new_tokens: int) -> dict:
    import httpx

    latencies: list[float] = []
    batches: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(timeout=300) as http:
            for j in range(per_client):
                body = {
                    "inputs": inputs[(i * per_client + j) % len(inputs)],
                    "max_new_tokens": max_new_tokens,
                }
                started = time.perf_counter()
                resp = http.post(f"{url}/generate", json=body)
                elapsed = time.perf_counter() - started
                with lock:
                    if resp.status_code != 200:
                        errors.append(resp.text)
                    else:
                        latencies.append(elapsed)
                        batches.append(resp.json()["batch_size"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / wall,
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "batch": statistics.mean(batches),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="per client")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="tuneops-bench-serving-")
    os.environ.update(
        {
            "TUNEOPS_HOME": home,
            "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.environ.pop("TUNEOPS_ARTIFACT_ROOT", None)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
    from tuneops.core.sample_data import generate_tickets
    from tuneops.serving.app import ServerThread, ServingConfig, create_app

    name = "bench-serving"
    print("building and registering tiny-llama (not timed)...", flush=True)
    register_tiny_llama(name)
    inputs = [{"subject": t["subject"], "input": t["body"]} for t in generate_tickets(64, seed=42)]
    modes = {
        "unbatched (max_batch_size=1)": 1,
        f"batched (max_batch_size={args.batch_size})": args.batch_size,
    }
    results: dict[str, list[dict]] = {m: [] for m in modes}
    load_before = os.getloadavg()[0]
    for repeat in range(args.repeats):
        order = list(modes) if repeat % 2 == 0 else list(reversed(modes))
        for mode in order:
            config = ServingConfig(
                model_name=name,
                max_batch_size=modes[mode],
                batch_wait_ms=5,
                max_new_tokens_limit=args.max_new_tokens,
                refresh_seconds=3600,
            )
            with ServerThread(create_app(config)) as url:
                run_load(url, inputs, 2, 2, args.max_new_tokens)  # warm-up, not timed
                result = run_load(url, inputs, args.clients, args.requests, args.max_new_tokens)
            results[mode].append(result)
            print(
                f"  repeat {repeat + 1} {mode}: {result['rps']:.2f} req/s, p95 {result['p95']:.2f}s, "
                f"mean batch {result['batch']:.1f}",
                flush=True,
            )
    load_after = os.getloadavg()[0]
    print(
        f"\n{args.clients} clients x {args.requests} requests, {args.max_new_tokens} new tokens max, greedy; "
        f"median of {args.repeats}; load average {load_before:.2f} -> {load_after:.2f}"
    )
    print(
        "| mode | requests/s | p50 latency (s) | p95 latency (s) | mean batch |\n| --- | --- | --- | --- | --- |"
    )
    medians = {}
    for mode, runs in results.items():
        medians[mode] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        m = medians[mode]
        print(f"| {mode} | {m['rps']:.2f} | {m['p50']:.2f} | {m['p95']:.2f} | {m['batch']:.1f} |")
    single, batched = medians.values()
    print(
        f"\nrequests/s batched / unbatched: {batched['rps'] / single['rps']:.2f}x; "
        f"p95 latency batched / unbatched: {batched['p95'] / single['p95']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
