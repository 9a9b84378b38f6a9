"""``llmops_deploy``: pick the champion's serving variant, render and validate its manifests, apply them."""

from __future__ import annotations

from tuneops.contracts import CompressJob, VariantChoice
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore


def choose_variant(job: CompressJob | dict, settings: Settings | None = None) -> VariantChoice:
    """The compression job's work: the champion's merged export (``registry.merged_export``, made once
    per fingerprint, so serving only reads it), then ``job.variant`` as asked, or with ``auto`` the
    quantized one when it passes its gate against the merged model (``compare_variants``).
    ``plan_compression`` makes the job's input on the worker. Returns the choice and its report.
    """
    from tuneops.evaluation.compression import compare_variants
    from tuneops.registry.registry import load_version_files

    job = CompressJob.model_validate(job)
    settings = settings or load_settings()
    load_version_files(job.model_name, job.version, settings)  # makes and verifies the merged export
    champion = {"model_name": job.model_name, "version": job.version, "project": job.project}
    if job.variant != "auto":
        return VariantChoice(**champion, variant=job.variant, report_uri=None)
    result = compare_variants(job.model_name, job.version, job.recipe, settings)
    return VariantChoice(**champion, variant=result["variant"], report_uri=result["report_uri"])


def plan_compression(
    model_name: str,
    version: str,
    variant: str,
    recipe: str | None,
    settings: Settings | None = None,
    project: str | None = None,
) -> CompressJob:
    """The compression job's input, made on the worker (no weights): the recipe whose eval and
    compression settings apply (``recipe``, else the project's, else the one of the project
    registering ``model_name``), resolved with the project's settings, and its compute (where the
    model fits). Raises ConfigError when ``auto`` has no recipe to apply.
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
    resolved = load_recipe(recipe, owner.recipe_overrides() if owner else None) if recipe else None
    compute = resolved.compute if resolved else None
    return CompressJob(
        model_name=model_name,
        version=str(version),
        variant=variant,
        recipe=resolved,
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
