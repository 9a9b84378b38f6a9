"""The Kubernetes backend: the pod runs the very command the local backend runs, on a GPU node.

The Kubernetes API cannot run here, so the pod is rendered (build_pod_request_obj) and
validated against the Kubernetes schema instead of being submitted.
"""

from pathlib import Path

import pytest

from tuneops.pipeline import train_command

REPO = Path(__file__).resolve().parents[2]

PLAN = {
    "recipe": "qwen2.5-0.5b-instruct",
    "dataset_uri": "s3://tuneops/artifacts/datasets/support_tickets/0123456789abcdef",
    "output_uri": "s3://tuneops/artifacts/candidates/abc-0123456789abcdef",
    "mlflow_run_id": "5f0c1e2d3c4b5a69",
}


@pytest.fixture(scope="module")
def pod():
    import jinja2
    from airflow.dag_processing.dagbag import DagBag


    op = DagBag(str(REPO / "dags")).dags["llmops_finetune"].get_task("train_kubernetes")

    class TI:
        @staticmethod
        def xcom_pull(task_ids):
            assert task_ids == "plan_training"
            return PLAN

    env = jinja2.Environment()
    op.arguments = [env.from_string(a).render(ti=TI) for a in op.arguments]
    return op.build_pod_request_obj(dry_run=True)


def test_pod_runs_the_same_command_as_the_local_backend(pod):
    container = pod.spec.containers[0]
    assert container.command + container.args == train_command(PLAN)


def test_pod_asks_for_a_gpu_node_and_reads_credentials_from_a_secret(pod):
    container = pod.spec.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations)
    assert container.env_from[0].secret_ref.name == "tuneops-credentials"
    assert not any("SECRET" in (e.name or "") for e in container.env or [])


def test_rendered_pod_is_valid_against_the_kubernetes_schema(pod):
    import kubernetes_validate
    from kubernetes.client import ApiClient

    manifest = ApiClient().sanitize_for_serialization(pod)
    kubernetes_validate.validate(manifest, "1.32", strict=True)
