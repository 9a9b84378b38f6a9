"""Sweep trials: expansion of lists and grids, trainer --set flags, the pod/local command."""

import pytest

from tests.support.plans import make_plan
from tuneops.config import ConfigError, expand_sweep, load_recipe
from tuneops.stages.finetune import train_command
from tuneops.training.train import build_parser, parse_sets


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
    [
        ([8, 16], "one mapping of recipe keys per trial"),
        ({"lora.r": 8}, "must map to non-empty lists"),
        ("r=8", "not str"),
    ],
)
def test_a_malformed_sweep_says_what_shape_it_needs(sweep, message):
    with pytest.raises(ConfigError, match=message):
        expand_sweep(sweep)


def test_a_trial_with_a_typo_fails_naming_the_key():
    (trial,) = expand_sweep([{"lora.rank": 8}])
    with pytest.raises(ConfigError, match="unknown key 'lora.rank'; valid keys here: alpha, dropout"):
        load_recipe("tiny-local", trial)


def test_set_flags_round_trip_through_the_trainer_command():
    plan = make_plan(
        "tiny-local",
        {"lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}, "train": {"learning_rate": 0.001}},
    )
    args = build_parser().parse_args(train_command(plan)[3:])
    overrides = parse_sets(args.set)
    assert overrides == plan.overrides
    recipe = load_recipe(args.recipe, overrides)
    assert (
        recipe.lora.r == 8
        and recipe.lora.target_modules == ["q_proj", "v_proj"]
        and recipe.train.learning_rate == 0.001
    )
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_sets(["lora.r"])


# --- Params may not pick code, images or credentials, nor exhaust the worker ------------------

PROTECTED = [
    ({"trust_remote_code": True}, "trust_remote_code"),
    ({"base_model": "attacker/model"}, "base_model"),
    ({"compute.kubernetes.image": "evil:latest"}, "compute.kubernetes.image"),
    ({"compute": {"kubernetes": {"secret_env": "prod-db"}}}, "compute.kubernetes.secret_env"),
    ({"compute.kubernetes.service_account": "admin"}, "compute.kubernetes.service_account"),
    ({"compute.kubernetes.cache.claim_name": "other-team"}, "compute.kubernetes.cache.claim_name"),
    ({"compute": {"backend": "kubernetes", "kubernetes": {}}}, "compute.kubernetes"),
    ({"registry.auto_approve": True}, "registry.auto_approve"),
]


@pytest.mark.parametrize(("trial", "key"), PROTECTED, ids=[k for _, k in PROTECTED])
def test_a_sweep_trial_may_not_set_a_key_that_picks_code_images_or_credentials(trial, key):
    from tuneops.config import ALLOWED_OVERRIDES_ENV, OverrideRefused, check_sweep

    with pytest.raises(OverrideRefused) as err:
        check_sweep([{"lora.r": 8}, trial], max_trials=32, allowed=())
    assert f"'{key}'" in str(err.value) and ALLOWED_OVERRIDES_ENV in str(err.value)
    assert "sweep trial 1" in str(err.value)


def test_the_deployment_can_allow_an_override_and_a_grid_is_checked_by_its_keys():
    from tuneops.config import OverrideRefused, check_sweep

    assert check_sweep([{"base_model": "my/other-base"}], 32, allowed=("base_model",)) == 1
    assert check_sweep({"compute.kubernetes.image": ["a:1", "b:2"]}, 32, allowed=("compute.kubernetes",)) == 2
    with pytest.raises(OverrideRefused, match="the sweep grid sets 'trust_remote_code'"):
        check_sweep({"trust_remote_code": [True, False]}, 32, allowed=("base_model",))
    # Harmless keys need no allowance.
    assert check_sweep({"lora.r": [4, 8], "train.learning_rate": [0.1, 0.01]}, 32, allowed=()) == 4


def test_a_huge_grid_is_counted_not_expanded_and_refused():
    from tuneops.config import check_sweep, count_trials

    grid = {f"train.k{i}": list(range(10)) for i in range(12)}  # 10**12 trials: expanding it would never end
    assert count_trials(grid) == 10**12
    with pytest.raises(
        ConfigError,
        match="1000000000000 trials, over this deployment's limit of 32.*TUNEOPS_MAX_SWEEP_TRIALS",
    ):
        check_sweep(grid, max_trials=32, allowed=())


def test_an_oversized_or_forbidden_sweep_creates_no_mlflow_run(tmp_path, restored_environ, monkeypatch):
    """The limit holds before plan_training creates the parent run and before plan_trials creates trials."""
    import mlflow

    from tuneops.config import OverrideRefused
    from tuneops.core.settings import load_settings
    from tuneops.core.tracking import configure_mlflow
    from tuneops.stages import finetune

    monkeypatch.setenv("TUNEOPS_MAX_SWEEP_TRIALS", "4")
    settings = load_settings()
    experiment = configure_mlflow(settings)

    def runs() -> int:
        return len(mlflow.search_runs([experiment], output_format="list"))

    before = runs()
    just_over = [{"lora.r": r} for r in range(1, 6)]
    with pytest.raises(ConfigError, match="5 trials, over this deployment's limit of 4"):
        finetune.plan_training("/nowhere", "tiny-local", settings=settings, sweep=just_over)
    plan = make_plan("tiny-local", mlflow_run_id="parent")
    with pytest.raises(ConfigError, match="5 trials"):
        finetune.plan_trials(plan, just_over, settings)
    with pytest.raises(OverrideRefused):
        finetune.plan_trials(plan, [{"trust_remote_code": True}], settings)
    assert runs() == before


def test_a_bad_max_sweep_trials_setting_names_itself(monkeypatch):
    from tuneops.core.settings import load_settings

    monkeypatch.setenv("TUNEOPS_MAX_SWEEP_TRIALS", "lots")
    with pytest.raises(ValueError, match="TUNEOPS_MAX_SWEEP_TRIALS='lots' is not a positive integer"):
        load_settings()


def test_the_deploy_params_may_not_pick_the_serving_image_or_namespace(monkeypatch):
    from tuneops.config import OverrideRefused
    from tuneops.core.settings import DEFAULT_SERVING_IMAGE as DEFAULT_IMAGE
    from tuneops.core.settings import load_settings
    from tuneops.serving.deploy import serving_target

    assert serving_target(None, None, load_settings()) == (DEFAULT_IMAGE, "tuneops")
    assert serving_target(DEFAULT_IMAGE, "tuneops", load_settings()) == (DEFAULT_IMAGE, "tuneops")
    with pytest.raises(OverrideRefused, match="serving.image.*TUNEOPS_ALLOWED_OVERRIDES=serving.image"):
        serving_target("attacker/miner:latest", None, load_settings())
    with pytest.raises(OverrideRefused, match="serving.namespace"):
        serving_target(None, "kube-system", load_settings())
    monkeypatch.setenv("TUNEOPS_SERVING_IMAGE", "registry.internal/serving:2")
    monkeypatch.setenv("TUNEOPS_ALLOWED_OVERRIDES", "serving.namespace")
    assert serving_target(None, "ml-staging", load_settings()) == (
        "registry.internal/serving:2",
        "ml-staging",
    )


def test_a_recipe_param_may_name_only_shipped_recipes_or_the_deployments_recipe_folders(
    tmp_path, monkeypatch
):
    from tuneops.config import OverrideRefused, check_recipe_ref
    from tuneops.core.settings import load_settings
    from tuneops.stages import finetune

    landed = tmp_path / "landing" / "evil.yaml"  # a YAML file landed beside a data batch
    landed.parent.mkdir()
    landed.write_text("base_model: attacker/model\ntrust_remote_code: true\n")
    with pytest.raises(OverrideRefused, match="evil.yaml.*TUNEOPS_RECIPE_DIRS"):
        finetune.plan_training("/nowhere", str(landed), settings=load_settings())
    check_recipe_ref("tiny-local", ())  # shipped names pass
    monkeypatch.setenv("TUNEOPS_RECIPE_DIRS", str(tmp_path / "recipes"))
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "ours.yaml").write_text("base_model: builtin:tiny-llama\n")
    check_recipe_ref(str(tmp_path / "recipes" / "ours.yaml"), load_settings().recipe_dirs)
    link = tmp_path / "recipes" / "link.yaml"  # a link out of the folder does not count as inside it
    link.symlink_to(landed)
    with pytest.raises(OverrideRefused):
        check_recipe_ref(str(link), load_settings().recipe_dirs)
    monkeypatch.setenv("TUNEOPS_RECIPE", str(landed))  # the deployment's own recipe is trusted
    check_recipe_ref(str(landed), load_settings().recipe_dirs)


def test_each_trial_plan_carries_its_own_resolved_recipe(restored_environ):
    """What later steps read (eval, gate, registry) is the trial's recipe, overrides applied."""
    from tuneops.core.settings import load_settings
    from tuneops.stages.finetune import plan_trials

    sweep = [{"eval.max_examples": 8, "gate.safety_floor": 0.5}, {"eval.max_examples": 16, "lora.r": 4}]
    plan = make_plan("tiny-local")
    trials = plan_trials(plan, sweep, load_settings())
    assert [t.recipe.eval.max_examples for t in trials] == [8, 16]
    assert [t.recipe.gate.safety_floor for t in trials] == [0.5, plan.recipe.gate.safety_floor]
    assert trials[1].recipe.lora.r == 4 and trials[1].recipe_hash != trials[0].recipe_hash
    # Only training keys change what is trained: an eval/gate-only trial trains the plan's adapter.
    assert trials[0].recipe_hash == plan.recipe_hash


def test_gpu_hours_follow_the_backend_the_run_used_not_the_recipes():
    """The compute Param picks the backend; GPU-hours count GPUs only for a Kubernetes run."""
    from tuneops.contracts import TrainingSummary
    from tuneops.stages.finetune import select_trial

    summary = {
        "output_uri": "/o",
        "base_model": "b",
        "base_model_path": "/b",
        "dataset_uri": "/d",
        "dataset_version": "v",
        "recipe_hash": "h",
        "mlflow_run_id": "r",
        "steps": 1,
        "stopped_early_at": None,
        "device": "cuda",
        "world_size": 1,
        "final_train_loss": 1.0,
        "eval_loss": 1.0,
        "train_examples": 1,
        "dropped_too_long": 0,
        "padding_efficiency": 1.0,
        "tokens_per_s": 1.0,
        "resumed_from_step": 0,
        "train_seconds": 3600.0,
        "trainable_params": 1,
        "peak_memory_gib": 0.0,
    }
    recipe = "qwen2.5-0.5b-instruct"  # compute.backend: kubernetes, 1 GPU
    on_pods = make_plan(recipe, compute="kubernetes")
    assert (
        select_trial(on_pods, [on_pods], [summary]).table[0].gpu_hours
        == on_pods.recipe.compute.kubernetes.gpus
    )
    local = make_plan(recipe, compute="local")  # the compute Param said local
    choice = select_trial(local, [local], [TrainingSummary(**summary)])
    assert choice.table[0].gpu_hours == 0 and choice.summary.train_seconds == 3600.0
