"""Register tiny random Llama models as real registry versions, in seconds and with no training.

Each version is built from a config with its own seed, so two versions answer differently:
enough to see which one a server is serving.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tuneops.config import Decoding, load_template
from tuneops.core.settings import Settings

TEXTS = [f"ticket {i}: my card was charged twice, order {i * 7} web chat email" for i in range(200)] + [
    json.dumps({"category": "billing", "priority": "high", "team": "payments"})
] * 20


def build_tiny_model(
    out_dir: Path, seed: int, tie_word_embeddings: bool = False, hidden_size: int = 32, layers: int = 2
) -> Path:
    """Save a random Llama (2 layers of width 32 unless told) and a trained BPE tokenizer (with a chat
    template) to ``out_dir``; ``tie_word_embeddings`` makes lm_head share the input embedding's matrix,
    as SmolLM2's does."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuneops.models.tiny_llama import CHAT_TEMPLATE, train_tokenizer

    tokenizer = train_tokenizer(TEXTS, vocab_size=400)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


#: Prompts for comparing tiny models' outputs.
PROMPTS = ["ticket 1: my card was charged twice", "ticket 9: order 63 web chat"]


def build_lora_adapter(base: Path, out: Path, seed: int) -> Path:
    """Save a LoRA adapter for ``base`` (attention projections, r 4) with its tokenizer to ``out``; its
    B matrices are random, not zero as peft starts them, so the adapter changes the outputs as a
    trained one does, with no training."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def register_tiny_version(name: str, seed: int, settings: Settings, template: str = "triage_v1") -> str:
    """Register a tiny random model as a new version of ``name``; returns the version."""
    import mlflow

    from tuneops.core.tracking import configure_mlflow
    from tuneops.registry.registry import log_text_generator

    configure_mlflow(settings)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name=f"tiny-{name}-{seed}"):
        model_dir = build_tiny_model(Path(tmp) / "model", seed)
        return log_text_generator(
            name,
            model_dir,
            template=load_template(template),
            max_new_tokens=12,
            decoding=Decoding(),
            model_card=f"tiny random model, seed {seed}",
        )


def seed_builtin_base_model(root: str) -> None:
    """Publish the test session's builtin tiny base model into the artifact store at ``root`` (a
    folder or ``s3://`` URI), as a deployment's store would already hold its base model: pretraining
    it again (about 100 s of CPU) tests nothing a stack test is about."""
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.models.base_model import builtin_key, resolve_base_model

    local = resolve_base_model("builtin:tiny-llama", ArtifactStore.from_settings(load_settings()))
    ArtifactStore(root).publish_dir(Path(local), builtin_key("tiny-llama"))
