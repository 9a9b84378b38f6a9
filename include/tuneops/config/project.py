"""Projects: one file that binds a dataset to its recipe, registered model, safety suite and monitoring.

A project is what travels through the asset chain: a landing event names it, and every
downstream DAG run (one per project, through Airflow's partitioned assets) reads the dataset
config, the template (the dataset config's), the recipe, the registered model name, the safety
suite and the monitoring config from it. Nothing else decides for an asset-triggered run.

```yaml
# configs/projects/headlines.yaml
name: headlines
dataset: ../datasets/headlines.yaml   # a shipped name, or a path relative to this file
recipe: ../recipes/headlines.yaml
model_name: tuneops-headlines         # overrides the recipe's registry.model_name
safety_suite: generic                 # overrides the recipe's eval.safety_suite
monitoring: null                      # optional monitoring config
```

Projects are looked up by name only, never by a path from an event or a Param: in the folders
the deployment lists in ``TUNEOPS_PROJECT_DIRS``, then ``<TUNEOPS_HOME>/configs/projects`` (where
``tuneops init-dataset`` writes), then, only while ``TUNEOPS_PROJECT_DIRS`` is unset, the shipped
demo project (``Settings.project_dirs`` lists exactly these folders). A project's own files name
their dataset, recipe and suites by shipped name or by path: the project file is trusted like
the deployment's recipe folders, because only the deployment can put it there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from tuneops.config.loading import CONFIG_DIR, ConfigError, StrictModel, load_model, path_is_file
from tuneops.core.excerpt import excerpt

log = logging.getLogger(__name__)

PROJECT_DIRS_ENV = "TUNEOPS_PROJECT_DIRS"
#: The shipped demo project's folder; ``Settings.project_dirs`` holds it only without TUNEOPS_PROJECT_DIRS.
SHIPPED_PROJECTS = CONFIG_DIR / "projects"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"


class ProjectConfig(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    dataset: str
    recipe: str
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    safety_suite: str | None = None  # default: the recipe's eval.safety_suite
    monitoring: str | None = None
    description: str = ""

    def recipe_overrides(self) -> dict:
        """What the project sets in its recipe: the registered model name and the safety suite.

        Neither is in the recipe hash (``tuneops.config.recipe_hash``), so two projects sharing a
        recipe and a dataset would share an adapter, but never a registered model.
        """
        overrides: dict = {"registry": {"model_name": self.model_name}}
        if self.safety_suite:
            overrides["eval"] = {"safety_suite": self.safety_suite}
        return overrides


def _folders(dirs: Sequence[str | Path] | None) -> list[Path]:
    return [SHIPPED_PROJECTS] if dirs is None else [Path(d) for d in dirs]


def project_path(name: str, dirs: Sequence[str | Path] | None = None) -> Path:
    """The file of project ``name``: the first ``<dir>/<name>.yaml`` of ``dirs`` (default: the shipped folder).

    ``name`` must be a project name, never a path. Raises ConfigError naming the project, where
    it looked, and the projects that exist there.
    """
    import re

    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ConfigError(
            f"project {excerpt(name)} is not a project name (lower-case letters, digits, '_' and '-'); "
            "events and Params name a project, never a path"
        )
    folders = _folders(dirs)
    for folder in folders:
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{name}{suffix}"
            if path_is_file(candidate):
                return candidate
    raise ConfigError(
        f"no project named '{name}'; known projects: {', '.join(list_projects(dirs)) or 'none'} "
        f"(looked in {', '.join(str(f) for f in folders)}). Create one with "
        f"`tuneops init-dataset <sample file> --name {name}`, or list its folder in {PROJECT_DIRS_ENV}"
    )


def _relative_to(ref: str | None, folder: Path) -> str | None:
    """A bare name stays a shipped name; a path is taken relative to the project file."""
    if ref is None or "://" in ref or not ref.endswith((".yaml", ".yml")) or Path(ref).is_absolute():
        return ref
    return str((folder / ref).resolve())


def load_project(name: str, dirs: Sequence[str | Path] | None = None) -> ProjectConfig:
    """Project ``name`` (see ``project_path``; a path is refused), its paths resolved.

    Relative paths inside the file are resolved against the file's folder, so the result names
    its dataset, recipe, safety suite and monitoring config by shipped name or absolute path.
    """
    path = project_path(name, dirs)
    project = load_model(ProjectConfig, path, "projects")
    if project.name != name:
        raise ConfigError(
            f"{path}: names project '{project.name}', but the file is {path.name}; make them match"
        )
    folder = path.resolve().parent
    return project.model_copy(
        update={
            key: _relative_to(getattr(project, key), folder)
            for key in ("dataset", "recipe", "safety_suite", "monitoring")
        }
    )


def list_projects(dirs: Sequence[str | Path] | None = None) -> list[str]:
    """Names of every project in ``dirs`` (default: the shipped folder), sorted."""
    return sorted({p.stem for folder in _folders(dirs) if folder.is_dir() for p in folder.glob("*.y*ml")})


def loadable_projects(dirs: Sequence[str | Path] | None = None) -> list[ProjectConfig]:
    """Every project in ``dirs`` that loads; a broken file is logged with its error and left out,
    so one bad project does not stop the others."""
    projects = []
    for name in list_projects(dirs):
        try:
            projects.append(load_project(name, dirs))
        except ConfigError as exc:
            log.error("project %s is left out: %s", name, exc)
    return projects


def project_for_dataset(dataset: str, dirs: Sequence[str | Path] | None = None) -> ProjectConfig:
    """The one project whose dataset config is named ``dataset`` (a run given only a URI).

    Raises ConfigError when none or several are, naming them: the caller should then name the project.
    """
    from tuneops.config.dataset import load_dataset_config

    matches = []
    for project in loadable_projects(dirs):
        try:
            if load_dataset_config(project.dataset).name == dataset:
                matches.append(project)
        except ConfigError as exc:
            log.error("project %s is left out: its dataset config does not load: %s", project.name, exc)
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise ConfigError(
            f"cannot tell the project of dataset '{dataset}' (projects using it: {found}); "
            "name the project (the 'project' Param, or --project)"
        )
    return matches[0]


def project_for_model(model_name: str, dirs: Sequence[str | Path] | None = None) -> str | None:
    """The name of the project that registers ``model_name``, or None when none does.

    Raises ConfigError when several do: which recipe and suite apply to the model would be a guess.
    """
    owners = [p.name for p in loadable_projects(dirs) if p.model_name == model_name]
    if len(owners) > 1:
        raise ConfigError(
            f"projects {', '.join(owners)} all register model '{model_name}'; give each its own model_name"
        )
    return owners[0] if owners else None
