"""Projects: found by name only, their paths resolved beside them, their settings applied to the recipe."""

import pytest
import yaml

from tuneops.config import (
    ConfigError,
    list_projects,
    load_dataset_config,
    load_project,
    load_recipe,
    loadable_projects,
    project_for_dataset,
    project_for_model,
)
from tuneops.config.project import SHIPPED_PROJECTS


def _write(folder, name, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "name": name,
        "dataset": "support_tickets",
        "recipe": "tiny-local",
        "model_name": f"m-{name}",
        **fields,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(body))
    return folder / f"{name}.yaml"


def test_a_project_is_found_by_name_in_the_deployments_folders_before_the_shipped_ones(tmp_path):
    _write(tmp_path / "projects", "support_tickets", model_name="ours")
    assert load_project("support_tickets", [tmp_path / "projects"]).model_name == "ours"
    assert load_project("support_tickets").model_name == "tuneops-support-triage"  # the shipped one
    assert list_projects([tmp_path / "projects"]) == ["support_tickets"]


def test_relative_paths_in_a_project_resolve_beside_its_file(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "r.yaml").write_text((load_recipe_path()).read_text())
    _write(tmp_path / "projects", "mine", recipe="../recipes/r.yaml", monitoring="support-triage")
    project = load_project("mine", [tmp_path / "projects"])
    assert project.recipe == str((tmp_path / "recipes" / "r.yaml").resolve())
    assert (
        project.dataset == "support_tickets" and project.monitoring == "support-triage"
    )  # shipped names stay


def load_recipe_path():
    from tuneops.config import CONFIG_DIR

    return CONFIG_DIR / "recipes" / "tiny-local.yaml"


def test_an_unknown_project_names_itself_the_known_ones_and_the_fix(tmp_path):
    _write(tmp_path / "projects", "alpha")
    with pytest.raises(ConfigError) as err:
        load_project("beta", [tmp_path / "projects"])
    message = str(err.value)
    assert "no project named 'beta'; known projects: alpha (looked in" in message
    assert "tuneops init-dataset" in message and "TUNEOPS_PROJECT_DIRS" in message


@pytest.mark.parametrize(
    "ref", ["../etc/passwd", "Has Caps", "", "a/b", "/tmp/evil.yaml", "../x.yaml", "x.yaml"]
)
def test_an_event_cannot_name_a_path_for_a_project(ref):
    with pytest.raises(ConfigError, match="is not a project name"):
        load_project(ref)


def test_a_file_whose_name_differs_from_its_project_is_refused(tmp_path):
    path = _write(tmp_path / "projects", "alpha")
    path.rename(tmp_path / "projects" / "beta.yaml")
    with pytest.raises(ConfigError, match="names project 'alpha', but the file is beta.yaml"):
        load_project("beta", [tmp_path / "projects"])


def test_a_project_sets_the_model_name_and_safety_suite_but_not_the_weights():
    from tuneops.config import recipe_hash

    project = load_project("support_tickets")
    plain = load_recipe(project.recipe, {"registry": {"model_name": "other"}, "eval": {"safety_suite": "x"}})
    resolved = load_recipe(project.recipe, project.recipe_overrides())
    assert resolved.registry.model_name == project.model_name
    assert resolved.eval.safety_suite == project.safety_suite
    assert recipe_hash(resolved) == recipe_hash(plain), "a project's settings must not retrain"


def test_the_project_of_a_dataset_or_a_model(tmp_path):
    folder = tmp_path / "projects"
    _write(folder, "copy")  # a second project on the support-ticket dataset
    assert project_for_model("m-copy", [folder]) == "copy"
    assert project_for_model("no-such-model", [folder]) is None
    shipped = [folder, SHIPPED_PROJECTS]
    with pytest.raises(ConfigError, match="projects using it: copy, support_tickets"):
        project_for_dataset("support_tickets", shipped)
    assert project_for_dataset("support_tickets").name == "support_tickets"  # the shipped folder alone
    _write(folder, "twin", model_name="m-copy")
    with pytest.raises(ConfigError, match="projects copy, twin all register model 'm-copy'"):
        project_for_model("m-copy", [folder])
    assert load_dataset_config(load_project("copy", [folder]).dataset).name == "support_tickets"


def _published(store, key: str, **meta) -> str:
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "meta.json").write_text(json.dumps(meta))
        return store.publish_dir(Path(tmp), key)


def test_a_batch_of_another_projects_dataset_is_refused_naming_both(tmp_path):
    """No row crosses between projects: a validated batch handed on with the wrong project stops
    before anything is read from it."""
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.stages.build_prompt_dataset import build_prompts

    settings = load_settings({"TUNEOPS_HOME": str(tmp_path)})
    store = ArtifactStore.from_settings(settings)
    foreign = _published(store, "validated/headlines/0123456789abcdef", dataset="headlines")
    with pytest.raises(ConfigError) as err:
        build_prompts([foreign], "support_tickets", settings)
    assert "project 'support_tickets' builds dataset 'support_tickets'" in str(err.value)
    assert foreign in str(err.value) and "its own project" in str(err.value)


def test_a_prompt_dataset_of_another_projects_dataset_is_not_trained(tmp_path):
    import json

    from tests.support.manifests import manifest_for
    from tuneops.config import load_template
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.stages.finetune import plan_training

    settings = load_settings({"TUNEOPS_HOME": str(tmp_path)})
    store = ArtifactStore.from_settings(settings)
    uri = _published(store, "datasets/headlines/v1")
    manifest = manifest_for(load_template("generic_v1"), dataset="headlines")
    (tmp_path / "artifacts" / "datasets" / "headlines" / "v1" / "manifest.json").write_text(
        json.dumps(manifest)
    )
    with pytest.raises(
        ConfigError, match="project 'support_tickets' trains on dataset 'support_tickets'.*'headlines'"
    ):
        plan_training(uri, settings=settings, project="support_tickets")
    with pytest.raises(ConfigError, match="cannot tell the project of dataset 'headlines'"):
        plan_training(uri, settings=settings)  # no project named, and none owns the dataset


def test_monitoring_targets_every_project_with_a_monitoring_config(tmp_path):
    from tuneops.core.settings import load_settings
    from tuneops.stages.monitor import monitor_targets

    folder = tmp_path / "projects"
    _write(folder, "quiet")  # no monitoring config
    _write(folder, "watched", monitoring="support-triage", model_name="m-watched")
    settings = load_settings({"TUNEOPS_HOME": str(tmp_path), "TUNEOPS_PROJECT_DIRS": str(folder)})
    targets = monitor_targets(None, None, settings)
    assert {"project": "watched", "config": "support-triage"} in targets
    assert "quiet" not in {t["project"] for t in targets}
    with pytest.raises(ConfigError, match="project 'quiet' names no monitoring config"):
        monitor_targets("quiet", None, settings)


def test_a_broken_project_file_is_left_out_not_fatal_to_the_others(tmp_path, caplog):
    folder = tmp_path / "projects"
    _write(folder, "good")
    (folder / "broken.yaml").write_text("name: broken\nrecipe: [unclosed\n")
    assert [p.name for p in loadable_projects([folder])] == ["good"]
    assert "project broken is left out" in caplog.text


def test_the_shipped_demo_project_is_only_there_without_a_deployments_own_folders(tmp_path):
    from tuneops.core.settings import load_settings

    bare = load_settings({"TUNEOPS_HOME": str(tmp_path)})
    assert str(SHIPPED_PROJECTS) in bare.project_dirs
    own = load_settings({"TUNEOPS_HOME": str(tmp_path), "TUNEOPS_PROJECT_DIRS": str(tmp_path / "mine")})
    assert own.project_dirs == (str(tmp_path / "mine"), str(tmp_path / "configs" / "projects"))


def test_the_weekly_retrain_asks_for_every_project_that_has_a_prompt_dataset(tmp_path):
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.stages.finetune import projects_to_retrain

    folder = tmp_path / "projects"
    _write(folder, "fresh")  # on the support-ticket dataset, like the shipped project
    settings = load_settings({"TUNEOPS_HOME": str(tmp_path), "TUNEOPS_PROJECT_DIRS": str(folder)})
    assert projects_to_retrain(None, settings) == []  # no prompt dataset yet
    _published(ArtifactStore.from_settings(settings), "datasets/support_tickets/v1")
    assert projects_to_retrain(None, settings) == ["fresh"]
    with pytest.raises(ConfigError, match="no project named 'gone'"):
        projects_to_retrain(["gone"], settings)
