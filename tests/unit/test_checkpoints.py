"""Checkpoints: exact round trip, and a broken newest checkpoint is skipped for the previous one."""

import logging
import shutil
from pathlib import Path

import pytest
import torch

from tuneops.core.store import MARKER, ArtifactStore
from tuneops.training.checkpoints import latest_complete, list_checkpoints, load_checkpoint, save_checkpoint

OUT = "candidates/run-1"


def tiny_setup(seed: int):
    """The same frozen base every time (as the trainer loads it from disk); LoRA init from ``seed``."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, get_cosine_schedule_with_warmup

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    base = LlamaForCausalLM(config)
    torch.manual_seed(seed)
    model = get_peft_model(base, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 2, 20)
    return model, optimizer, scheduler


def step(model, optimizer, scheduler) -> float:
    ids = torch.randint(0, 64, (2, 12))  # drawn from the global RNG, as dropout is
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def adapter_of(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}


def test_resumed_training_is_bit_identical_to_uninterrupted(tmp_path):
    store = ArtifactStore(str(tmp_path))
    model, optimizer, scheduler = tiny_setup(0)
    for _ in range(3):
        step(model, optimizer, scheduler)
    save_checkpoint(store, OUT, 3, model, optimizer, scheduler, {"tokens": 72})
    reference = [step(model, optimizer, scheduler) for _ in range(3)]

    resumed, r_opt, r_sched = tiny_setup(seed=123)  # different init: everything must come from the checkpoint
    state = load_checkpoint(latest_complete(store, OUT), resumed, r_opt, r_sched)
    assert state == {"tokens": 72, "step": 3}
    assert r_sched.last_epoch == 3
    assert [step(resumed, r_opt, r_sched) for _ in range(3)] == reference
    ours, theirs = adapter_of(model), adapter_of(resumed)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_only_safetensors_and_json_are_written(tmp_path):
    store = ArtifactStore(str(tmp_path))
    model, optimizer, scheduler = tiny_setup(0)
    step(model, optimizer, scheduler)
    save_checkpoint(store, OUT, 1, model, optimizer, scheduler, {"tokens": 1})
    files = [p for p in Path(store.uri(OUT + ".checkpoints")).rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files if p.name != MARKER} == {".safetensors", ".json"}


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    store = ArtifactStore(str(tmp_path))
    model, optimizer, scheduler = tiny_setup(0)
    for n in (10, 20, 30):
        save_checkpoint(store, OUT, n, model, optimizer, scheduler, {"tokens": n}, keep=2)
    assert [k.rsplit("-", 1)[1] for k in list_checkpoints(store, OUT)] == ["00000020", "00000030"]


def _missing_state(folder: Path):
    (folder / "state.json").unlink()


def _truncated(name: str):
    def damage(folder: Path):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return damage


def _emptied(folder: Path):
    shutil.rmtree(folder)
    folder.mkdir()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_missing_state, "state.json is missing"),
        (_truncated("adapter.safetensors"), "adapter.safetensors has .* bytes, expected .* \\(truncated\\)"),
        (
            _truncated("optimizer.safetensors"),
            "optimizer.safetensors has .* bytes, expected .* \\(truncated\\)",
        ),
        (_emptied, None),  # no marker: never listed at all
    ],
    ids=["missing-state-file", "truncated-adapter", "truncated-optimizer", "empty-folder"],
)
def test_a_broken_newest_checkpoint_is_skipped_for_the_previous_complete_one(
    tmp_path, caplog, damage, reason
):
    store = ArtifactStore(str(tmp_path))
    model, optimizer, scheduler = tiny_setup(0)
    for n in (10, 20):
        step(model, optimizer, scheduler)
        save_checkpoint(store, OUT, n, model, optimizer, scheduler, {"tokens": n}, keep=5)
    damage(Path(store.uri(f"{OUT}.checkpoints/step-00000020")))
    with caplog.at_level(logging.WARNING, logger="tuneops.training.checkpoints"):
        folder = latest_complete(store, OUT)
    assert folder is not None and folder.name == "step-00000010"
    fresh = tiny_setup(1)
    assert load_checkpoint(folder, *fresh)["step"] == 10
    if reason:
        assert any(
            __import__("re").search(f"skipping checkpoint .*step-00000020: {reason}", r.getMessage())
            for r in caplog.records
        )


def test_no_checkpoint_means_start_from_step_zero(tmp_path):
    assert latest_complete(ArtifactStore(str(tmp_path)), OUT) is None
