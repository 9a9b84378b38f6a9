"""The embedded tiny model: a 3M-parameter Llama-architecture causal LM the project builds itself.

No hub and no internet: a byte-level BPE tokenizer is trained with ``tokenizers`` on local
text, a Llama model is built from a config and pretrained briefly on plain ticket text, and
both are saved with ``save_pretrained``. It is ``builtin:tiny-llama`` (see
``tuneops.models.base_model``): the fast test tier's base model, and an explicit recipe
(``tiny-local``). It knows the domain's words and no task, and has no chat training.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

log = logging.getLogger(__name__)

TINY_LLAMA = {
    "name": "tiny-llama",
    "format_version": 6,  # 6: the artifact carries base_model.json
    "vocab_size": 4096,
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 6,
    "num_key_value_heads": 3,
    "max_position_embeddings": 512,
    "pretrain_steps": 300,
    "pretrain_batch_size": 8,
    "pretrain_seq_len": 256,
    "pretrain_lr": 3e-3,
    "corpus_size": 4000,
    "seed": 1234,
}
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
# A Zephyr-style chat template, so chat-format prompt templates work on the embedded model
# exactly as on a hub chat model: each turn ends in EOS, the reply is what follows the
# generation prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def pretraining_texts(spec: dict = TINY_LLAMA) -> list[str]:
    """The plain ticket text the tiny model and its tokenizer are trained on (deterministic)."""
    from tuneops.core.sample_data import pretraining_corpus

    return pretraining_corpus(spec["corpus_size"], seed=spec["seed"])


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts``, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(out_dir: Path, tokenizer_dir: Path, spec: dict = TINY_LLAMA) -> Path:
    """Pretrain the tiny model with the tokenizer in ``tokenizer_dir``; save both into ``out_dir``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    started = time.monotonic()
    torch.manual_seed(spec["seed"])
    corpus = pretraining_texts(spec)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Untied, so a recipe can put LoRA on lm_head and still merge cleanly into the weights.
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)

    # Pretrain on a packed stream of plain ticket text: a language model that knows the
    # domain's words but has never seen the triage task.
    ids: list[int] = []
    for text in corpus:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    seq = spec["pretrain_seq_len"]
    blocks = torch.tensor(ids[: len(ids) // seq * seq]).view(-1, seq)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["pretrain_lr"], weight_decay=0.01)
    steps = spec["pretrain_steps"]
    gen = torch.Generator().manual_seed(spec["seed"])
    model.train()
    for step in range(steps):
        lr = spec["pretrain_lr"] * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        batch = blocks[torch.randint(len(blocks), (spec["pretrain_batch_size"],), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            log.info("tiny-llama pretrain step %d/%d loss %.3f", step + 1, steps, loss.item())
    model.eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    log.info("built tiny-llama (%d params) in %.1fs", model.num_parameters(), time.monotonic() - started)
    return out_dir
