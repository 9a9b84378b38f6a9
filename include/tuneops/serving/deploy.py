"""Roll the serving endpoint out on Kubernetes: render, validate, apply.

``render_serving`` fills the shipped ``configs/kubernetes/serving.yaml`` (Deployment + Service)
for one model version and variant; ``validate_manifests`` checks every object against the
Kubernetes schema (``kubernetes-validate``, offline); ``apply_manifests`` creates or patches
them through the Kubernetes API. The version goes in a pod annotation, so a new champion
rolls the pods (``maxUnavailable: 0``: old pods serve until new ones report a loaded model).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import yaml

from tuneops.core.settings import DEFAULT_SERVING_IMAGE, DEFAULT_SERVING_NAMESPACE

log = logging.getLogger(__name__)
MANIFEST = Path(__file__).parents[1] / "configs" / "kubernetes" / "serving.yaml"
KUBERNETES_VERSION = "1.32.0"


def _template() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def serving_target(image: str | None, namespace: str | None, settings) -> tuple[str, str]:
    """The serving image and namespace for a deploy run: the deployment's, unless Params override them.

    The deployment's are ``settings.serving_image`` / ``serving_namespace`` (``TUNEOPS_SERVING_IMAGE``,
    ``TUNEOPS_SERVING_NAMESPACE``). A Param that differs from them overrides ``serving.image`` /
    ``serving.namespace``, refused (``tuneops.config.OverrideRefused``) unless
    ``TUNEOPS_ALLOWED_OVERRIDES`` names that key: whoever may trigger ``llmops_deploy`` must not pick
    the code the endpoint runs or where it runs.
    """
    from tuneops.config import ALLOWED_OVERRIDES_ENV, OverrideRefused, override_allowed

    chosen = []
    for key, given, configured, env in (
        ("serving.image", image, settings.serving_image, "TUNEOPS_SERVING_IMAGE"),
        ("serving.namespace", namespace, settings.serving_namespace, "TUNEOPS_SERVING_NAMESPACE"),
    ):
        if given and given != configured and not override_allowed(key, settings.allowed_overrides):
            raise OverrideRefused(
                f"the Param sets {key} to {given[:80]!r}, but this deployment serves {configured!r} ({env}); "
                f"leave the Param empty, change {env}, or allow the override in {ALLOWED_OVERRIDES_ENV}={key}"
            )
        chosen.append(given or configured)
    return chosen[0], chosen[1]


def render_serving(
    model_name: str,
    version: str,
    variant: str = "merged",
    *,
    image: str = DEFAULT_SERVING_IMAGE,
    namespace: str = DEFAULT_SERVING_NAMESPACE,
    replicas: int = 1,
    gpu: bool = True,
) -> list[dict]:
    """The Deployment and Service serving ``model_name@champion`` (now ``version``) as ``variant``."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    docs = copy.deepcopy(_template())
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]
        spec["replicas"] = replicas
        pod = spec["template"]
        pod["metadata"]["annotations"].update(
            {"tuneops/model-version": str(version), "tuneops/variant": variant}
        )
        (container,) = pod["spec"]["containers"]
        container["image"] = image
        container["args"] = ["--model-name", model_name, "--alias", "champion", "--variant", variant]
        if not gpu:
            for section in ("requests", "limits"):
                container["resources"][section].pop("nvidia.com/gpu", None)
            pod["spec"].pop("nodeSelector", None)
            pod["spec"].pop("tolerations", None)
    return docs


def validate_manifests(docs: list[dict], kubernetes_version: str = KUBERNETES_VERSION) -> None:
    """Raise ValueError naming the object and field when any manifest breaks the Kubernetes schema."""
    import kubernetes_validate

    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise ValueError(
                f"{doc.get('kind')}/{doc['metadata'].get('name')}: {path}: {exc.message}"
            ) from exc


def apply_manifests(docs: list[dict], api_client) -> list[str]:
    """Create each object, or patch it when it exists; returns ``["created Deployment/x", ...]``."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    calls = {
        "Deployment": (apps.create_namespaced_deployment, apps.patch_namespaced_deployment),
        "Service": (core.create_namespaced_service, core.patch_namespaced_service),
    }
    done = []
    for doc in docs:
        create, patch = calls[doc["kind"]]
        name, namespace = doc["metadata"]["name"], doc["metadata"]["namespace"]
        try:
            create(namespace=namespace, body=doc)
            done.append(f"created {doc['kind']}/{name}")
        except ApiException as exc:
            if exc.status != 409:
                raise
            patch(name=name, namespace=namespace, body=doc)
            done.append(f"patched {doc['kind']}/{name}")
    log.info("applied to namespace %s: %s", docs[0]["metadata"]["namespace"], ", ".join(done))
    return done
