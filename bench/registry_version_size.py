"""What one registered version stores: the merged model (before issue 19) vs adapter + base reference.

For each shipped recipe's base model and LoRA settings, builds the adapter the trainer would publish
(``peft`` on the recipe's target modules; its size does not depend on the trained values) and the
merged model a version used to hold, saves both as the registry stores them (safetensors plus
tokenizer) and prints the bytes side by side. Sizes, not times: the machine's load does not matter.

    .venv/bin/python bench/registry_version_size.py [--recipes tiny-local smollm2-135m-instruct]

Uses the machine-wide base-model cache (tuneops.models.base_model); a cold cache builds the tiny
model (about 100 s) and converts SmolLM2 (about 20 s).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def measure(recipe_name: str, store) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneops.config import load_recipe
    from tuneops.models.base_model import resolve_base_model
    from tuneops.registry.registry import merge_adapter

    recipe = load_recipe(recipe_name)
    base = resolve_base_model(recipe.base_model, store)
    lora = recipe.lora
    with tempfile.TemporaryDirectory() as tmp:
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base),
            LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules, task_type="CAUSAL_LM"
            ),
        )
        adapter = Path(tmp) / "adapter"
        model.save_pretrained(adapter, safe_serialization=True)
        AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
        merged = merge_adapter(base, adapter, Path(tmp) / "merged")
        return {
            "recipe": recipe_name,
            "base_model": recipe.base_model,
            "lora": f"r={lora.r} on {','.join(lora.target_modules)}",
            "merged_mb": folder_mb(merged),
            "adapter_mb": folder_mb(adapter),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["tiny-local", "smollm2-135m-instruct"])
    args = parser.parse_args()
    from tuneops.core.store import ArtifactStore

    with tempfile.TemporaryDirectory() as root:
        store = ArtifactStore(str(Path(root) / "artifacts"))
        rows = [measure(name, store) for name in args.recipes]
    print(f"{'recipe':<24} {'base model':<34} {'merged MB':>10} {'adapter MB':>11} {'ratio':>7}  LoRA")
    for row in rows:
        ratio = row["adapter_mb"] / row["merged_mb"]
        print(
            f"{row['recipe']:<24} {row['base_model']:<34} {row['merged_mb']:>10.2f} {row['adapter_mb']:>11.2f} "
            f"{ratio:>7.2%}  {row['lora']}"
        )


if __name__ == "__main__":
    main()
