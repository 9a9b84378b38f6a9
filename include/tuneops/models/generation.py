"""Load a causal LM (optionally with a LoRA adapter) and generate text in batches.

Shared by evaluation, the registered MLflow model and the CLI, so the gate measures exactly
what serving returns: greedy decoding by default, left padding, KV cache.
"""

from __future__ import annotations

from pathlib import Path

from tuneops.config import Decoding


def load_model(
    model_path: str,
    adapter_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    quantize: str | None = None,
    device: str = "auto",
):
    """Return ``(model, tokenizer)`` ready for generation; an adapter is merged into the weights.

    ``quantize``: ``int8`` (dynamic, CPU), or ``bnb-8bit`` / ``bnb-4bit`` (bitsandbytes, CUDA only).
    ``device``: ``auto`` puts the model on this process's GPU when it has one (sharded over all of
    them when it has several), else on the CPU; ``cpu`` keeps it there (a merge to save, the int8
    variant). Weights stay fp32 on either device (GPU kernels may still round differently). Raises
    ValueError for a quantization this machine cannot run, naming what it needs.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    load_kwargs = {"dtype": torch.float32}
    if quantize in ("bnb-8bit", "bnb-4bit"):
        if not torch.cuda.is_available():
            raise ValueError(f"quantize={quantize!r} needs a CUDA GPU; use 'int8' (dynamic int8) on CPU")
        from transformers import BitsAndBytesConfig

        bits = {"load_in_8bit": True} if quantize == "bnb-8bit" else {"load_in_4bit": True}
        load_kwargs = {"quantization_config": BitsAndBytesConfig(**bits), "device_map": "auto"}
    elif device == "auto" and quantize is None and torch.cuda.is_available():
        load_kwargs["device_map"] = "auto" if torch.cuda.device_count() > 1 else "cuda"

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir or model_path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        model_path, trust_remote_code=trust_remote_code, **load_kwargs
    )
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.eval()
    if quantize == "int8":
        model = quantize_model(model, "int8")
    elif quantize not in (None, "bnb-8bit", "bnb-4bit"):
        raise ValueError(f"unknown quantize={quantize!r}; choose one of {QUANTIZATIONS}")
    return model, tokenizer


QUANTIZATIONS = ("int8", "bnb-8bit", "bnb-4bit")


def quantize_model(model, variant: str):
    """The served variant of a merged model: ``int8`` is dynamic int8 quantization of the Linear layers (CPU).

    ``bnb-8bit`` / ``bnb-4bit`` need CUDA and bitsandbytes and are applied when loading
    (``load_model(..., quantize=...)``); asking for them here raises ValueError.
    """
    import torch

    if variant == "int8":
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    raise ValueError(
        f"unknown or load-time-only quantization {variant!r}: use 'int8' here, or load_model(path, quantize=...) "
        f"for one of {QUANTIZATIONS}"
    )


def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 48,
    batch_size: int = 16,
    add_special_tokens: bool = True,
    decoding: Decoding | None = None,
    token_counts: list[int] | None = None,
) -> list[str]:
    """Completions for ``prompts`` (the prompt text is not included in the output).

    When ``token_counts`` is a list, the number of tokens generated for each prompt (up to
    and excluding end-of-sequence) is appended to it.

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
        ).to(model.device)
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
        if token_counts is not None:
            ended = new_tokens == tokenizer.eos_token_id
            first_end = torch.where(ended.any(dim=1), ended.int().argmax(dim=1), new_tokens.shape[1])
            token_counts += first_end.tolist()
        outputs += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return outputs
