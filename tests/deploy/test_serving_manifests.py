"""The serving Deployment + Service: rendered per version, valid Kubernetes, applied through a mocked API."""

from unittest import mock

import pytest

from tuneops.cli import build_parser
from tuneops.serving.deploy import apply_manifests, render_serving, validate_manifests


def test_rendered_manifests_are_valid_kubernetes_and_carry_the_version():
    docs = render_serving(
        "triage", "7", "int8", image="registry.example/serving:1.2", namespace="ml", replicas=2
    )
    validate_manifests(docs)
    deployment, service = docs
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    assert all(d["metadata"]["namespace"] == "ml" for d in docs)
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"tuneops/model-version": "7", "tuneops/variant": "int8"}
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example/serving:1.2" and deployment["spec"]["replicas"] == 2
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_container_args_are_what_the_serve_command_accepts():
    (container,) = render_serving("triage", "7", "int8")[0]["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "8080", *container["args"]])
    assert (args.model_name, args.alias, args.variant) == ("triage", "champion", "int8")


def test_cpu_rendering_drops_the_gpu_request_and_node_selector():
    docs = render_serving("triage", "1", gpu=False)
    validate_manifests(docs)
    pod = docs[0]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"] and "nodeSelector" not in pod


def test_an_invalid_manifest_is_refused_naming_the_field():
    docs = render_serving("triage", "1")
    docs[0]["spec"]["replicas"] = "two"
    with pytest.raises(ValueError, match=r"Deployment/tuneops-serving: spec\.replicas"):
        validate_manifests(docs)
    with pytest.raises(ValueError, match="replicas must be at least 1"):
        render_serving("triage", "1", replicas=0)


def test_apply_creates_then_patches_what_exists():
    from kubernetes.client.rest import ApiException

    docs = render_serving("triage", "3")
    with mock.patch("kubernetes.client.AppsV1Api") as apps, mock.patch("kubernetes.client.CoreV1Api") as core:
        apps.return_value.create_namespaced_deployment.side_effect = ApiException(status=409)
        done = apply_manifests(docs, api_client=object())
    assert done == ["patched Deployment/tuneops-serving", "created Service/tuneops-serving"]
    apps.return_value.patch_namespaced_deployment.assert_called_once_with(
        name="tuneops-serving", namespace="tuneops", body=docs[0]
    )
    core.return_value.create_namespaced_service.assert_called_once_with(namespace="tuneops", body=docs[1])
    with mock.patch("kubernetes.client.AppsV1Api") as apps, mock.patch("kubernetes.client.CoreV1Api"):
        apps.return_value.create_namespaced_deployment.side_effect = ApiException(status=403)
        with pytest.raises(ApiException):
            apply_manifests(docs, api_client=object())


def test_the_mlflow_manifests_are_valid_and_run_the_pinned_mlflow_with_auth():
    import yaml

    from tuneops.serving.deploy import MANIFEST

    docs = [d for d in yaml.safe_load_all(MANIFEST.with_name("mlflow.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = "tuneops"
    validate_manifests(docs)
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    pinned = next(
        line.split("==")[1]
        for line in (MANIFEST.parents[4] / "constraints" / "all.txt").read_text().splitlines()
        if line.startswith("mlflow==")
    )
    assert container["image"].endswith(f":v{pinned}"), (
        "the server must run the MLflow version the clients pin"
    )
    assert "--app-name basic-auth" in container["args"][0] and container["envFrom"][0]["secretRef"]
    assert docs[1]["spec"]["ports"][0]["port"] == 5000


def test_the_mlflow_server_admits_in_cluster_callers_and_bootstraps_auth_from_its_secret():
    import re

    import yaml
    from mlflow.server.security_utils import is_allowed_host_header

    from tuneops.serving.deploy import MANIFEST

    deployment = next(yaml.safe_load_all(MANIFEST.with_name("mlflow.yaml").read_text()))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    allowed = re.search(r'--allowed-hosts "([^"]+)"', container["args"][0]).group(1).split(",")
    for host in (
        "tuneops-mlflow:5000",
        "tuneops-mlflow.tuneops:5000",
        "tuneops-mlflow.tuneops.svc.cluster.local:5000",
    ):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "evil.example:5000")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "> " + env["MLFLOW_AUTH_CONFIG_PATH"] in container["args"][0]
