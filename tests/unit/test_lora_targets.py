"""LoRA targets and tied embeddings: the merged model evaluation and serving load is the trained one.

SmolLM2 and Qwen2.5 tie lm_head to the input embedding. LoRA on lm_head trains a delta for the
output layer alone, but merging writes it into the one shared matrix, which changes the input
embedding too: the merged model is not the trained adapter. The trainer refuses such a recipe;
every shipped recipe's merged and unmerged outputs agree.
"""

from pathlib import Path

import pytest

from tests.support.tiny_models import build_tiny_model
from tuneops.config import load_recipe
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.models.base_model import resolve_base_model, tied_embedding_targets

SHIPPED = sorted(
    p.stem for p in (Path(__file__).parents[2] / "include/tuneops/configs/recipes").glob("*.yaml")
)


def _with_random_adapter(model, lora):
    """``model`` with the recipe's LoRA adapters, their B matrices random (a fresh adapter is a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft = get_peft_model(
        model,
        LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules, task_type="CAUSAL_LM"
        ),
    )
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return peft.eval()


def _stand_in(recipe):
    """The recipe's base model where it is here (the builtins), else a tiny model of the same kind:
    Qwen2.5 is a tied-embedding Qwen2, which a small random Qwen2 with tied embeddings stands in for."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if recipe.base_model.startswith("builtin:"):
        path = resolve_base_model(recipe.base_model, ArtifactStore.from_settings(load_settings()))
        return AutoModelForCausalLM.from_pretrained(path)
    assert recipe.base_model.startswith("Qwen/Qwen2.5"), f"add a stand-in for {recipe.base_model}"
    config = Qwen2Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipes_adapter_merges_into_the_same_model(name):
    import torch

    recipe = load_recipe(name)
    model = _stand_in(recipe)
    assert tied_embedding_targets(model, recipe.lora.target_modules) == []
    peft = _with_random_adapter(model, recipe.lora)
    ids = torch.randint(5, 400, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unmerged = peft(input_ids=ids).logits
        merged = peft.merge_and_unload()(input_ids=ids).logits
    # fp32 rounding over 30 layers moves logits of ~15 by ~1e-4; the tied-lm_head bug moves them by ~1.
    assert torch.allclose(unmerged, merged, atol=2e-3), (unmerged - merged).abs().max()
    assert (unmerged.argmax(-1) == merged.argmax(-1)).all()


def test_lora_on_a_tied_lm_head_changes_the_merged_model_and_the_trainer_refuses_it(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from tuneops.training.train import LoraFinetune, TrainingError

    folder = build_tiny_model(tmp_path / "tied", seed=2, tie_word_embeddings=True)
    recipe = load_recipe("tiny-local", {"base_model": str(folder)})
    assert "lm_head" in recipe.lora.target_modules
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert tied_embedding_targets(model, recipe.lora.target_modules) == ["lm_head"]
    assert tied_embedding_targets(model, ["q_proj", "embed_tokens"]) == ["embed_tokens"]
    assert tied_embedding_targets(model, ["model.embed_tokens", "o_proj"]) == ["model.embed_tokens"]

    # Why: the merge writes the lm_head delta into the shared matrix, the input embedding too.
    peft = _with_random_adapter(model, recipe.lora)
    ids = torch.randint(5, 300, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unmerged = peft(input_ids=ids).logits
        merged = peft.merge_and_unload()(input_ids=ids).logits
    assert not torch.allclose(unmerged, merged, atol=1e-3)

    job = LoraFinetune(recipe, str(tmp_path / "d"), str(tmp_path / "out"), None, load_settings())
    with pytest.raises(TrainingError, match=r"lora.target_modules names \['lm_head'\].*remove \['lm_head'\]"):
        job.setup_model()
    untied = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "untied", seed=2))
    assert tied_embedding_targets(untied, recipe.lora.target_modules) == []
