"""Chat models done right, on SmolLM2's real tokenizer: the model's own chat template lays out the
turns, the loss sees the assistant's reply and its end-of-turn token and nothing else, and the pad
token is set without adding a token (SmolLM2's pad is its EOS, ``<|im_end|>``)."""

import json

import pytest

from tuneops.config import load_template
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.core.templates import render_example
from tuneops.models.base_model import resolve_tokenizer
from tuneops.training.train import collate, tokenize_split

REPLY = json.dumps({"category": "billing", "priority": "high", "team": "payments"})
TICKET = {"subject": "Charged twice", "input": "My card was charged twice for order 42.", "response": REPLY}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    path = resolve_tokenizer("builtin:smollm2-135m-instruct", ArtifactStore.from_settings(load_settings()))
    return AutoTokenizer.from_pretrained(path)


def test_the_prompt_is_the_models_own_chat_layout_up_to_the_assistant_turn(tokenizer):
    prompt, response = render_example(load_template("triage_chat_v1"), TICKET, tokenizer)
    assert prompt == (
        "<|im_start|>system\nYou triage customer support tickets. Reply with JSON only.<|im_end|>\n"
        "<|im_start|>user\nClassify the ticket into category, priority and owning team.\n"
        "Subject: Charged twice\nMy card was charged twice for order 42.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert response == REPLY + "<|im_end|>"


def test_the_loss_mask_covers_exactly_the_reply_and_its_end_of_turn_token(tokenizer):
    prompt, response = render_example(load_template("triage_chat_v1"), TICKET, tokenizer)
    [example], dropped = tokenize_split(
        [{"prompt": prompt, "response": response}], tokenizer, 512, add_special_tokens=False
    )
    assert dropped == 0
    ids, labels = example["input_ids"], example["labels"]
    # Tokenizing prompt and reply apart gives the tokens of the whole text: no merge across the cut.
    assert ids == tokenizer(prompt + response, add_special_tokens=False)["input_ids"]
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert tokenizer.decode(labels[n_prompt:]) == REPLY + "<|im_end|>"
    assert labels[-1] == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert (
        labels.count(tokenizer.eos_token_id) == 1
    )  # one end of turn, not one from the template and one added


def test_padding_with_the_eos_token_masks_the_padding_but_never_the_replys_end(tokenizer):
    template = load_template("triage_chat_v1")
    short = render_example(template, TICKET, tokenizer)
    long = render_example(
        template, {**TICKET, "input": TICKET["input"] + " It happened again today."}, tokenizer
    )
    examples, _ = tokenize_split(
        [dict(zip(("prompt", "response"), pair, strict=True)) for pair in (short, long)],
        tokenizer,
        512,
        add_special_tokens=False,
    )
    # SmolLM2 pads with its EOS: the vocabulary (and so the embedding) keeps its 49,152 tokens.
    assert tokenizer.pad_token_id == tokenizer.eos_token_id and len(tokenizer) == 49152
    ids, labels, mask = collate(examples, tokenizer.pad_token_id)
    n = len(examples[0]["input_ids"])
    assert int(mask[0].sum()) == n and (labels[0, n:] == -100).all()  # the padding: no loss
    assert labels[0, n - 1] == tokenizer.eos_token_id  # the reply's own <|im_end|> keeps its label
    assert (ids[0, n:] == tokenizer.pad_token_id).all()


def test_a_chat_dataset_trains_only_the_model_whose_chat_layout_it_is():
    from tuneops.config import ConfigError, load_recipe
    from tuneops.contracts import DatasetManifest
    from tuneops.stages.finetune import check_chat_tokenizer

    manifest = DatasetManifest.model_construct(
        dataset="support_tickets",
        version="v1",
        template_id="triage_chat_v1",
        template_format="chat",
        tokenizer="builtin:smollm2-135m-instruct",
    )
    check_chat_tokenizer(manifest, load_recipe("smollm2-135m-instruct"), "smollm2-135m-instruct")
    with pytest.raises(
        ConfigError, match="chat layout of builtin:smollm2-135m-instruct.*trains builtin:tiny-llama"
    ):
        check_chat_tokenizer(manifest, load_recipe("tiny-local"), "tiny-local")
    instruction = manifest.model_copy(update={"template_format": "instruction", "template_id": "triage_v1"})
    check_chat_tokenizer(instruction, load_recipe("tiny-local"), "tiny-local")  # plain text: any model
