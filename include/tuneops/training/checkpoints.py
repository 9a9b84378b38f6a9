"""Training checkpoints in the artifact store: safetensors only, complete or invisible.

A checkpoint is a folder ``<output>.checkpoints/step-<8 digits>`` holding the adapter
weights, the optimizer's tensors and the RNG state as safetensors, the scheduler and loop
state as JSON, and ``checkpoint.json``: the size and SHA-256 of every other file. The store
publishes it atomically and writes its ``_SUCCESS`` marker last, so a folder without the
marker (a kill mid-upload) is never listed. Resuming takes the newest listed checkpoint
whose files all match ``checkpoint.json`` and skips, with a warning naming the file, one
with a missing or truncated file; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tuneops.core.hashing import hash_file
from tuneops.core.store import ArtifactStore

log = logging.getLogger(__name__)
INDEX = "checkpoint.json"


def checkpoint_prefix(out_key: str) -> str:
    return f"{out_key}.checkpoints"


def _step_of(key: str) -> int:
    return int(key.rsplit("step-", 1)[1])


def save_checkpoint(
    store: ArtifactStore, out_key: str, step: int, model, optimizer, scheduler, state: dict, keep: int = 2
) -> str:
    """Publish the training state after ``step``; keeps the newest ``keep`` checkpoints. Returns its URI."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    with store.publishing(f"{checkpoint_prefix(out_key)}/step-{step:08d}") as out:
        adapter = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(adapter, out / "adapter.safetensors")
        opt = optimizer.state_dict()
        tensors = {}
        for index, slots in opt["state"].items():
            for name, value in slots.items():
                tensors[f"{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
        save_file(tensors, out / "optimizer.safetensors")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():  # dropout on a GPU draws from its own generator
            rng.update({f"cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, out / "rng.safetensors")
        (out / "optimizer.json").write_text(json.dumps({"param_groups": opt["param_groups"]}))
        (out / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        (out / "state.json").write_text(json.dumps({**state, "step": step}))
        files = {p.name: {"bytes": p.stat().st_size, "sha256": hash_file(p)} for p in sorted(out.iterdir())}
        (out / INDEX).write_text(json.dumps({"step": step, "files": files}, indent=2))
    uri = store.uri(f"{checkpoint_prefix(out_key)}/step-{step:08d}")
    for old in list_checkpoints(store, out_key)[:-keep]:
        store.remove_dir(old)
    return uri


def list_checkpoints(store: ArtifactStore, out_key: str) -> list[str]:
    """Keys of published (marked) checkpoints, oldest first."""
    return sorted(store.list_keys(checkpoint_prefix(out_key)), key=_step_of)


def problem_with(folder: Path) -> str | None:
    """Why the checkpoint in ``folder`` cannot be used, or None when every file matches its index."""
    index = folder / INDEX
    if not index.is_file():
        return f"{INDEX} is missing"
    try:
        files = json.loads(index.read_text())["files"]
    except (ValueError, KeyError):
        return f"{INDEX} is unreadable"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, expected {expected['bytes']} (truncated)"
        if hash_file(path) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def latest_complete(store: ArtifactStore, out_key: str) -> Path | None:
    """The local folder of the newest usable checkpoint, skipping (and logging) broken ones."""
    for key in reversed(list_checkpoints(store, out_key)):
        folder = store.fetch_dir(key)
        problem = problem_with(folder)
        if problem is None:
            return folder
        log.warning("skipping checkpoint %s: %s", store.uri(key), problem)
    return None


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore model adapter, optimizer, scheduler and torch RNG from ``folder``; returns the loop state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(folder / "adapter.safetensors"))
    tensors = load_file(folder / "optimizer.safetensors")
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, slot = name.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict(
        {"state": state, "param_groups": json.loads((folder / "optimizer.json").read_text())["param_groups"]}
    )
    scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))
    rng = load_file(folder / "rng.safetensors")
    torch.set_rng_state(rng.pop("torch"))
    if rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[f"cuda.{i}"] for i in range(len(rng))])
    return json.loads((folder / "state.json").read_text())
