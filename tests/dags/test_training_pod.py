"""The Kubernetes backend: the pod runs the very command the local backend runs, shaped by the recipe.

The Kubernetes API cannot run here, so the pod is rendered (build_pod_request_obj) and
validated against the Kubernetes schema instead of being submitted.
"""

from pathlib import Path

import pytest

from tests.support.plans import GPU_PLAN as PLAN
from tests.support.plans import make_plan
from tuneops.stages.finetune import train_command

REPO = Path(__file__).resolve().parents[2]


def render(plan):
    """The DAG's train_kubernetes task as it runs for one mapped ``plan``: pod shaped, pod built."""
    from airflow.dag_processing.dagbag import DagBag

    from tuneops.airflow.trainer_pod import TrainerPodOperator

    mapped = DagBag(str(REPO / "dags")).dags["llmops_finetune"].get_task("train_kubernetes")
    op = mapped.unmap({"plan": plan.model_dump(mode="json")})
    assert isinstance(op, TrainerPodOperator)
    pod = op.pod_operator()
    return pod, pod.build_pod_request_obj(dry_run=True)


@pytest.fixture(scope="module")
def qwen():
    return render(PLAN)


def validate(pod) -> None:
    import kubernetes_validate
    from kubernetes.client import ApiClient

    kubernetes_validate.validate(ApiClient().sanitize_for_serialization(pod), "1.32", strict=True)


def test_pod_runs_the_same_command_as_the_local_backend(qwen):
    container = qwen[1].spec.containers[0]
    assert container.command + container.args == train_command(PLAN)


def test_pod_takes_gpus_resources_placement_and_cache_from_the_recipe(qwen):
    op, pod = qwen
    container = pod.spec.containers[0]
    assert container.image == "ghcr.io/tuneops/trainer:0.1.0" and pod.metadata.namespace == "tuneops"
    assert container.resources.requests == {"cpu": "8", "memory": "48Gi"}
    assert container.resources.limits == {"memory": "64Gi", "nvidia.com/gpu": "1"}
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [
        ("nvidia.com/gpu", "Exists", "NoSchedule")
    ]
    volume = next(v for v in pod.spec.volumes if v.name == "cache")  # beside the XCom sidecar's
    assert volume.empty_dir.size_limit == "100Gi"
    assert ("cache", "/cache") in [(m.name, m.mount_path) for m in container.volume_mounts]
    assert {e.name: e.value for e in container.env}["HF_HOME"] == "/cache/huggingface"
    assert op.startup_timeout_seconds == 1200 and op.deferrable is True
    assert op.on_finish_action.value == "delete_succeeded_pod" and op.reattach_on_restart is True


def test_credentials_come_from_a_secret_not_from_values(qwen):
    container = qwen[1].spec.containers[0]
    assert [e.secret_ref.name for e in container.env_from] == ["tuneops-credentials"]
    assert not any(
        key in (e.name or "") for e in container.env or [] for key in ("SECRET", "PASSWORD", "TOKEN", "KEY")
    )


def test_rendered_pod_is_valid_against_the_kubernetes_schema(qwen):
    validate(qwen[1])


def test_another_recipe_shapes_another_pod(tmp_path):
    recipe = tmp_path / "pvc.yaml"
    recipe.write_text(
        "base_model: builtin:tiny-llama\n"
        "compute:\n  backend: kubernetes\n  kubernetes:\n"
        "    image: registry.local/trainer:dev\n    gpus: 2\n    cpu: '16'\n    memory: 96Gi\n"
        "    node_selector: {pool: a100}\n"
        "    tolerations: [{key: dedicated, operator: Equal, value: training, effect: NoExecute}]\n"
        "    service_account: trainer\n    secret_env: null\n"
        "    cache: {kind: pvc, claim_name: hf-cache, mount_path: /models}\n"
        "    on_finish_action: keep_pod\n    deferrable: false\n"
    )
    op, pod = render(make_plan(str(recipe)))
    container = pod.spec.containers[0]
    assert container.image == "registry.local/trainer:dev"
    assert container.resources.limits == {"memory": "96Gi", "nvidia.com/gpu": "2"}
    assert pod.spec.node_selector == {"pool": "a100"} and pod.spec.service_account_name == "trainer"
    assert pod.spec.tolerations[0].value == "training" and not container.env_from
    volume = next(v for v in pod.spec.volumes if v.name == "cache")
    assert volume.persistent_volume_claim.claim_name == "hf-cache"
    assert ("cache", "/models") in [(m.name, m.mount_path) for m in container.volume_mounts]
    assert op.on_finish_action.value == "keep_pod" and op.deferrable is False
    validate(pod)


def test_a_pvc_cache_without_a_claim_is_a_config_error(tmp_path):
    from tuneops.config import ConfigError, load_recipe

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("base_model: x\ncompute:\n  kubernetes:\n    cache: {kind: pvc}\n")
    with pytest.raises(ConfigError, match="compute.kubernetes.cache.*claim_name"):
        load_recipe(recipe)


def test_a_sweep_trial_pod_passes_its_overrides_to_the_trainer():
    plan = make_plan("qwen2.5-0.5b-instruct", {"lora": {"r": 8}, "train": {"learning_rate": 0.001}})
    op, pod = render(plan)
    container = pod.spec.containers[0]
    assert container.command + container.args == train_command(plan)
    assert container.args[-4:] == ["--set", "lora.r=8", "--set", "train.learning_rate=0.001"]
