"""Evaluation loads the base model once and swaps the adapters onto it (``SharedBase``), and each
model still generates exactly what it generates when loaded on its own (merged, as served)."""

import pytest

from tests.support.tiny_models import PROMPTS, build_lora_adapter, build_tiny_model
from tuneops.evaluation.evaluate import ModelRef, SharedBase, load_separately


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared-base")
    base = build_tiny_model(root / "base", seed=5, hidden_size=64, layers=2)
    return {
        "base": str(base),
        "candidate": str(build_lora_adapter(base, root / "candidate", seed=6)),
        "champion": str(build_lora_adapter(base, root / "champion", seed=7)),
    }


def _generate(loaded) -> list[str]:
    from tuneops.models.generation import generate

    model, tokenizer = loaded
    return generate(model, tokenizer, PROMPTS, max_new_tokens=8)


def test_one_base_load_serves_every_role_with_the_outputs_of_separate_loads(models, monkeypatch):
    import transformers

    refs = [
        ModelRef("base", "b", models["base"]),
        ModelRef("candidate", "c", models["base"], models["candidate"]),
        ModelRef("champion", "p", models["base"], models["champion"]),
        ModelRef("base-again", "b", models["base"]),  # the base is itself again after the swaps
    ]
    expected = {}
    for ref in refs:
        with load_separately(ref) as loaded:
            expected[ref.role] = _generate(loaded)
    assert expected["candidate"] != expected["base"] != expected["champion"], "the adapters must matter"

    loads = []
    original = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM,
        "from_pretrained",
        lambda *a, **k: loads.append(a[0]) or original(*a, **k),
    )
    shared = SharedBase(models["base"])
    for ref in refs:
        with shared.loader(ref) as loaded:
            assert _generate(loaded) == expected[ref.role], ref.role
    assert loads == [models["base"]]


def test_a_model_on_another_base_or_quantized_is_loaded_on_its_own(models, tmp_path):
    other = build_tiny_model(tmp_path / "other", seed=8, hidden_size=64, layers=2)
    shared = SharedBase(models["base"])
    for ref in (
        ModelRef("champion", "o", str(other)),
        ModelRef("int8", "q", models["base"], quantize="int8"),
    ):
        with shared.loader(ref) as (model, _):
            assert model is not shared.model
    assert shared.model is None  # nothing on the shared base was needed
