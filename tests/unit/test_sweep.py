"""Sweep trials: expansion of lists and grids, trainer --set flags, the pod/local command."""

import pytest

from tuneops.config import ConfigError, expand_sweep, load_recipe
from tuneops.pipeline import train_command
from tuneops.train import build_parser, parse_sets


def test_a_list_gives_one_trial_per_item_and_a_grid_every_combination():
    assert expand_sweep(None) == [{}]
    assert expand_sweep([{"lora.r": 8}, {"train": {"learning_rate": 0.01}}]) == [
        {"lora": {"r": 8}},
        {"train": {"learning_rate": 0.01}},
    ]
    grid = expand_sweep({"lora.r": [8, 16], "train.learning_rate": [0.001, 0.003]})
    assert len(grid) == 4 and {"lora": {"r": 16}, "train": {"learning_rate": 0.001}} in grid


@pytest.mark.parametrize(
    ("sweep", "message"),
    [([8, 16], "one mapping of recipe keys per trial"), ({"lora.r": 8}, "must map to non-empty lists"), ("r=8", "not str")],
)
def test_a_malformed_sweep_says_what_shape_it_needs(sweep, message):
    with pytest.raises(ConfigError, match=message):
        expand_sweep(sweep)


def test_a_trial_with_a_typo_fails_naming_the_key():
    (trial,) = expand_sweep([{"lora.rank": 8}])
    with pytest.raises(ConfigError, match="unknown key 'lora.rank'; valid keys here: alpha, dropout"):
        load_recipe("tiny-local", trial)


def test_set_flags_round_trip_through_the_trainer_command():
    plan = {
        "recipe": "tiny-local",
        "dataset_uri": "/d",
        "output_uri": "/o",
        "mlflow_run_id": "r",
        "overrides": {"lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}, "train": {"learning_rate": 0.001}},
    }
    args = build_parser().parse_args(train_command(plan)[3:])
    overrides = parse_sets(args.set)
    assert overrides == plan["overrides"]
    recipe = load_recipe(args.recipe, overrides)
    assert recipe.lora.r == 8 and recipe.lora.target_modules == ["q_proj", "v_proj"] and recipe.train.learning_rate == 0.001
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_sets(["lora.r"])
