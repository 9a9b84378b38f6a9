"""Load a causal LM (optionally with a LoRA adapter) and generate text in batches.

Shared by evaluation, the registered MLflow model and the CLI, so the gate measures exactly
what serving returns: greedy decoding by default, left padding, KV cache.
"""

from __future__ import annotations

from pathlib import Path

from tuneops.config import Decoding


def load_model(model_path: str, adapter_dir: str | Path | None = None, trust_remote_code: bool = False):
    """Return ``(model, tokenizer)`` ready for generation; an adapter is merged into the weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir or model_path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        model_path, trust_remote_code=trust_remote_code, dtype=torch.float32
    )
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.eval()
    return model, tokenizer


def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 48,
    batch_size: int = 16,
    add_special_tokens: bool = True,
    decoding: Decoding | None = None,
) -> list[str]:
    """Completions for ``prompts`` (the prompt text is not included in the output).

    ``add_special_tokens`` must match training: False for chat-formatted prompts. ``decoding``
    defaults to greedy; sampling is seeded, so a rerun gives the same text.
    """
    import torch

    decoding = decoding or Decoding()
    settings = {"do_sample": decoding.do_sample, "num_beams": decoding.num_beams}
    if decoding.repetition_penalty != 1.0:
        settings["repetition_penalty"] = decoding.repetition_penalty
    if decoding.do_sample:
        settings.update(temperature=decoding.temperature, top_p=decoding.top_p)
        torch.manual_seed(decoding.seed)
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special_tokens,
        )
        with torch.no_grad():
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                use_cache=True,
                **settings,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        outputs += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return outputs
