"""``llmops_deploy``: pick the champion's serving variant, render and validate its manifests, apply them."""

from __future__ import annotations

from tuneops.contracts import CompressJob, VariantChoice
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore


def choose_variant(
    model_name: str,
    version: str,
    variant: str,
    recipe: str | None,
    settings: Settings | None = None,
    project: str | None = None,
) -> VariantChoice:
    """``variant`` as asked, or with ``auto`` the quantized one when it passes its gate against the merged.

    The recipe whose eval and compression settings apply is ``recipe`` if given, else the project's
    (``project``, else the one registering ``model_name``); the project's overrides apply either way.
    This runs the compression job's work (it loads the model): ``plan_compression`` is what a worker
    calls first.
    """
    from tuneops.config import load_project
    from tuneops.evaluation.compression import compare_variants

    settings = settings or load_settings()
    job = plan_compression(model_name, version, variant, recipe, settings, project)
    champion = {"model_name": model_name, "version": str(version), "project": job.project}
    if variant != "auto":
        return VariantChoice(**champion, variant=variant, report_uri=None)
    owner = load_project(job.project, settings.project_dirs) if job.project else None
    overrides = owner.recipe_overrides() if owner else None
    result = compare_variants(model_name, str(version), job.recipe, settings, overrides)
    return VariantChoice(**champion, variant=result["variant"], report_uri=result["report_uri"])


def plan_compression(
    model_name: str,
    version: str,
    variant: str,
    recipe: str | None,
    settings: Settings | None = None,
    project: str | None = None,
) -> CompressJob:
    """The compression job's input: the recipe whose settings apply (``recipe``, else the project's) and
    its compute (where the model fits). Loads no weights. Raises ConfigError when ``auto`` has no recipe.
    """
    from tuneops.config import ConfigError, load_project, load_recipe, project_for_model

    settings = settings or load_settings()
    project = project or project_for_model(model_name, settings.project_dirs)
    owner = load_project(project, settings.project_dirs) if project else None
    recipe = recipe or (owner.recipe if owner else None)
    if recipe is None and variant == "auto":
        raise ConfigError(
            f"no project registers {model_name} and no recipe was given: set the 'recipe' Param or the project"
        )
    compute = load_recipe(recipe, owner.recipe_overrides() if owner else None).compute if recipe else None
    return CompressJob(
        model_name=model_name,
        version=str(version),
        variant=variant,
        recipe=recipe,
        project=project,
        **({"compute": compute.backend, "kubernetes": compute.kubernetes} if compute else {}),
    )


def champion_version(model_name: str, project: str | None = None, settings: Settings | None = None) -> dict:
    """``{"model_name", "version", "project"}`` of ``model_name``'s current champion; ValueError without one."""
    from tuneops.config import project_for_model
    from tuneops.registry.registry import CHAMPION, alias_version

    settings = settings or load_settings()
    champion = alias_version(model_name, CHAMPION, settings)
    if champion is None:
        raise ValueError(f"{model_name} has no champion to deploy; set the 'version' Param")
    project = (
        project
        or champion.tags.get("tuneops.project")
        or project_for_model(model_name, settings.project_dirs)
    )
    return {"model_name": model_name, "version": str(champion.version), "project": project}


def render_deployment(
    choice: dict,
    image: str | None,
    namespace: str | None,
    replicas: int,
    gpu: bool,
    settings: Settings | None = None,
) -> dict:
    """Render the serving manifests for ``choice``, validate them and publish them to the artifact store.

    ``image``/``namespace`` left None take the deployment's; other values must be allowed by
    ``TUNEOPS_ALLOWED_OVERRIDES`` (``tuneops.config.OverrideRefused`` otherwise). Returns
    ``choice`` plus ``manifest_uri``.
    """
    import yaml

    from tuneops.serving.deploy import render_serving, serving_target, validate_manifests

    settings = settings or load_settings()
    image, namespace = serving_target(image, namespace, settings)
    docs = render_serving(
        choice["model_name"],
        choice["version"],
        choice["variant"],
        image=image,
        namespace=namespace,
        replicas=replicas,
        gpu=gpu,
    )
    validate_manifests(docs)
    key = f"deploy/{choice['model_name']}/v{choice['version']}-{choice['variant']}/serving.yaml"
    uri = ArtifactStore.from_settings(settings).write_bytes(
        key, yaml.safe_dump_all(docs, sort_keys=False).encode()
    )
    return {**choice, "manifest_uri": uri}


def apply_deployment(manifest_uri: str, api_client, settings: Settings | None = None) -> list[str]:
    """Apply the published manifests at ``manifest_uri`` with a Kubernetes ``api_client``; returns what changed."""
    import yaml

    from tuneops.serving.deploy import apply_manifests

    store = ArtifactStore.from_settings(settings or load_settings())
    docs = list(yaml.safe_load_all(store.read_bytes(store.key_of(manifest_uri))))
    return apply_manifests(docs, api_client)
