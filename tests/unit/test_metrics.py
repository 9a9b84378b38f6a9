"""The shipped evaluate modules load by path, offline, and compute the right numbers."""

import math

import pytest

from tuneops.config import Decoding, load_template
from tuneops.evaluation.evaluate import EvaluationError, compute_metrics, load_metric

REF = '{"category": "billing", "priority": "high", "team": "payments"}'


def test_rouge_and_bleu_modules_load_offline_by_path():
    rouge = load_metric("rouge").compute(predictions=["the cat sat"], references=["the cat sat"])
    assert rouge == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    bleu = load_metric("bleu").compute(predictions=["a b c d e f"], references=["a b c d e f"])
    assert math.isclose(bleu["bleu"], 1.0)


def test_metrics_separate_right_from_wrong_answers():
    template = load_template("triage_v1")
    perfect, per_example = compute_metrics([REF, REF], [REF, REF], template)
    assert perfect["exact_match"] == 1.0 and perfect["rougeL"] == 1.0 and perfect["format_valid"] == 1.0
    assert per_example["exact_match"] == [True, True] and per_example["format_problem"] == ["", ""]
    wrong, _ = compute_metrics(
        ['{"category": "bug", "priority": "low", "team": "engineering"}'] * 2, [REF] * 2, template
    )
    assert wrong["exact_match"] == 0.0 and 0.2 < wrong["rougeL"] < 0.8 and wrong["bleu"] < perfect["bleu"]


def test_format_check_names_the_problem_per_example():
    result = load_metric("json_format").compute(
        predictions=[REF, "category: billing", '{"category": "billing", "team": ""}', "[1, 2]"],
        required_keys=["category", "priority", "team"],
    )
    assert result["format_valid"] == 0.25
    assert result["problems"][0] == ""
    assert result["problems"][1].startswith("not JSON")
    assert result["problems"][2] == "missing or empty keys: priority, team"
    assert result["problems"][3] == "JSON list, not an object"


def test_templates_without_an_output_spec_get_no_format_metric():
    scores, per_example = compute_metrics(["a b"], ["a b"], None)
    assert "format_valid" not in scores and "format_problem" not in per_example


def test_empty_eval_set_is_an_error():
    with pytest.raises(EvaluationError, match="empty"):
        compute_metrics([], [])


@pytest.fixture(scope="module")
def tiny_lm():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuneops.models.tiny_llama import train_tokenizer

    texts = [f"ticket {i}: my card was charged twice, order {i * 7}" for i in range(200)] + [REF] * 20
    tokenizer = train_tokenizer(texts, vocab_size=400)
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


def test_perplexity_scores_only_the_response_tokens(tiny_lm):
    import torch

    model, tokenizer = tiny_lm
    prompts = ["ticket 1: my card", "ticket 22: order 7, my card was charged twice and"]
    responses = [REF, "billing"]
    result = load_metric("perplexity").compute(
        predictions=responses, prompts=prompts, model=model, tokenizer=tokenizer, batch_size=2
    )
    expected = []
    for prompt, response in zip(prompts, responses, strict=True):
        p = tokenizer(prompt)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        labels = torch.tensor([[-100] * len(p) + r])
        with torch.no_grad():
            expected.append(math.exp(model(input_ids=torch.tensor([p + r]), labels=labels).loss.item()))
    assert result["perplexities"] == pytest.approx(expected, rel=1e-4)
    assert min(expected) <= result["perplexity"] <= max(expected)


def test_batched_left_padded_generation_matches_one_at_a_time(tiny_lm):
    from tuneops.models.generation import generate

    model, tokenizer = tiny_lm
    prompts = [f"ticket {i}: my card was charged twice" + " again" * (i % 4) for i in range(8)]
    batched = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=8)
    single = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=1)
    assert batched == single


def test_sampling_follows_the_decoding_config_and_is_seeded(tiny_lm):
    from tuneops.models.generation import generate

    model, tokenizer = tiny_lm
    prompts = ["ticket 3: my card"] * 4
    sample = Decoding(do_sample=True, temperature=5.0, seed=1)
    first = generate(model, tokenizer, prompts, max_new_tokens=10, decoding=sample)
    assert first == generate(model, tokenizer, prompts, max_new_tokens=10, decoding=sample)
    assert len(set(first)) > 1, "hot sampling should vary across the batch"
    greedy = generate(model, tokenizer, prompts, max_new_tokens=10)
    assert len(set(greedy)) == 1
