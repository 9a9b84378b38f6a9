import pytest

from tuneops.config import ConfigError, load_dataset_config, load_recipe, load_template


def test_shipped_configs_load():
    assert load_recipe("smollm2-135m-instruct").base_model == "builtin:smollm2-135m-instruct"
    assert load_recipe("tiny-local").base_model == "builtin:tiny-llama"
    assert load_recipe("qwen2.5-0.5b-instruct").compute.backend == "kubernetes"
    cfg = load_dataset_config("support_tickets")  # the shipped one: the default model's chat layout
    assert cfg.tokenizer == "builtin:smollm2-135m-instruct"
    assert load_template(cfg.template).id == "triage_chat_v1" and load_template(cfg.template).format == "chat"


def test_typo_in_recipe_names_the_key_and_the_valid_ones(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("base_model: builtin:tiny-llama\nlora:\n  rr: 8\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert "unknown key 'lora.rr'" in msg
    assert "alpha, dropout, quantize_4bit, r, target_modules" in msg
    assert str(path) in msg


def test_bad_value_and_missing_key_are_named(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  max_steps: -1\n")
    msg = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert "missing required key 'base_model'" in msg
    assert "bad value for 'train.max_steps'" in msg


def test_unknown_shipped_name_lists_the_shipped_ones():
    msg = str(pytest.raises(ConfigError, load_recipe, "tiny-locl").value)
    assert "tiny-local" in msg and "qwen2.5-0.5b-instruct" in msg


def test_overrides_win_over_the_file():
    assert load_recipe("tiny-local", {"train": {"max_steps": 7}}).train.max_steps == 7
    assert load_recipe("tiny-local", {"train": {"max_steps": 7}}).train.batch_size == 16


def test_splits_must_leave_rows_for_train(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(
        "name: x\ncolumns: {id: a, input: b, response: c}\ntemplate: triage_v1\nsplits: {validation: 0.5, test: 0.5}\n"
    )
    assert "must leave rows for train" in str(pytest.raises(ConfigError, load_dataset_config, path).value)
