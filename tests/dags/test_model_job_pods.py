"""Every model job of the DAGs becomes a pod on the Kubernetes backend: evaluation and registration
(llmops_finetune), compression (llmops_deploy), and training under torchrun for several GPUs.

The Kubernetes API cannot run here, so each pod is built as the task builds it at run time
(``build_pod_request_obj``, and the operator's own ``dry_run``) and validated against the
Kubernetes schema instead of being submitted.
"""

from pathlib import Path

import pytest

from tests.support.plans import DECISION, make_choice, make_plan
from tests.support.plans import GPU_PLAN as PLAN
from tuneops.contracts import CompressJob, Evaluations
from tuneops.stages.finetune import train_command

REPO = Path(__file__).resolve().parents[2]


def _dags():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags")).dags


def _job_pod(dag_id: str, task_id: str, payload: dict):
    """The DAG's model-job task as it runs on Kubernetes: its KubernetesPodOperator and the pod."""
    from tuneops.airflow.model_job import ModelJobOperator

    op = _dags()[dag_id].get_task(task_id)
    assert isinstance(op, ModelJobOperator)
    op.payload = payload  # what the templated XCom resolves to at run time
    pod = op.pod_operator()
    return pod, pod.build_pod_request_obj(dry_run=True)


def _validate(pod) -> None:
    import kubernetes_validate
    from kubernetes.client import ApiClient

    kubernetes_validate.validate(ApiClient().sanitize_for_serialization(pod), "1.32", strict=True)


def _command(pod) -> list[str]:
    container = pod.spec.containers[0]
    return container.command + container.args


def _assert_shaped_by_the_recipe(op, pod, gpu: bool) -> None:
    from tuneops.core.settings import load_settings

    container = pod.spec.containers[0]
    assert container.image == "ghcr.io/tuneops/trainer:0.1.0" and pod.metadata.namespace == "tuneops"
    if gpu:
        assert container.resources.limits == {"memory": "64Gi", "nvidia.com/gpu": "1"}
        assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    else:  # a job that loads no model waits for no GPU node
        assert container.resources.limits == {"memory": "64Gi"} and not pod.spec.node_selector
        assert not pod.spec.tolerations
    assert ("cache", "/cache") in [(m.name, m.mount_path) for m in container.volume_mounts]
    env = {e.name: e.value for e in container.env}
    assert env["HF_HOME"] == "/cache/huggingface"
    # The store the job's input and outputs live in is the worker's, not one under the pod's cache.
    assert env["TUNEOPS_ARTIFACT_ROOT"] == load_settings().artifact_root
    assert [e.secret_ref.name for e in container.env_from] == ["tuneops-credentials"]
    assert op.deferrable is True and op.do_xcom_push is True


CHOICE = make_choice(PLAN.model_copy(update={"compute": "kubernetes"}))
JOBS = {
    "evaluate": ("llmops_finetune", "evaluate", {"choice": CHOICE.model_dump(mode="json")}),
    "register": (
        "llmops_finetune",
        "register_challenger",
        {
            "choice": CHOICE.model_dump(mode="json"),
            "evaluations": Evaluations({}).model_dump(mode="json"),
            "decision": DECISION.model_dump(mode="json"),
            "labels": {"dag_id": "llmops_finetune", "dag_run_id": "manual__1"},
        },
    ),
    "compress": (
        "llmops_deploy",
        "compress",
        CompressJob(
            model_name="tuneops-support-triage",
            version="3",
            variant="auto",
            recipe=PLAN.recipe,
            project="support_tickets",
            compute="kubernetes",
            kubernetes=PLAN.recipe.compute.kubernetes,
        ).model_dump(mode="json"),
    ),
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_each_model_job_is_a_pod_with_the_recipes_gpu_cache_and_secrets(job, capsys):
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.jobs import parse_input

    dag_id, task_id, payload = JOBS[job]
    op, pod = _job_pod(dag_id, task_id, payload)
    command = _command(pod)
    assert command[:4] == ["python", "-m", "tuneops.jobs", job] and command[4] == "--input"
    store = ArtifactStore.from_settings(load_settings())
    published = store.read_json(store.key_of(command[5]))  # the pod reads its input from the store
    assert parse_input(job, published) == parse_input(job, payload)
    assert pod.metadata.name.startswith(f"tuneops-{job}")
    _assert_shaped_by_the_recipe(op, pod, gpu=job != "register")
    _validate(pod)
    op.dry_run()  # the operator's own dry run prints the same pod as YAML
    printed = capsys.readouterr().out
    assert "- tuneops.jobs\n" in printed and f"- {job}\n" in printed
    assert ("nvidia.com/gpu: '1'" in printed) == (job != "register")


def test_a_job_on_the_local_backend_runs_as_a_subprocess_and_never_builds_a_pod(monkeypatch):
    import tuneops.jobs
    from tuneops.airflow.model_job import ModelJobOperator

    dag_id, task_id, payload = JOBS["evaluate"]
    local = {"choice": {**payload["choice"], "plan": {**payload["choice"]["plan"], "compute": "local"}}}
    ran = []
    monkeypatch.setattr(
        tuneops.jobs, "run_locally", lambda job, p, on_start: ran.append((job, p)) or {"ok": 1}
    )
    monkeypatch.setattr(ModelJobOperator, "pod_operator", lambda self: pytest.fail("built a pod"))
    op = _dags()[dag_id].get_task(task_id)
    op.payload = local
    assert op.execute({}) == {"ok": 1} and ran == [("evaluate", local)]


@pytest.mark.parametrize("gpus", [1, 4])
def test_the_trainer_pod_runs_one_process_per_gpu_under_torchrun(gpus):
    from tuneops.airflow.trainer_pod import TrainerPodOperator

    plan = make_plan("qwen2.5-0.5b-instruct", {"compute": {"kubernetes": {"gpus": gpus}}})
    mapped = _dags()["llmops_finetune"].get_task("train_kubernetes")
    op = mapped.unmap({"plan": plan.model_dump(mode="json")})
    assert isinstance(op, TrainerPodOperator)
    pod_op = op.pod_operator()
    pod = pod_op.build_pod_request_obj(dry_run=True)
    trainer = train_command(plan)
    if gpus == 1:
        assert _command(pod) == trainer
    else:
        assert _command(pod) == ["torchrun", "--standalone", "--nproc_per_node=4", *trainer[1:]]
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == str(gpus)
    shm = [v for v in pod.spec.volumes if v.empty_dir is not None and v.empty_dir.medium == "Memory"]
    mounts = {m.name: m.mount_path for m in pod.spec.containers[0].volume_mounts}
    # NCCL between the processes of one pod needs more shared memory than the default 64 MiB.
    assert [mounts.get(v.name) for v in shm] == ([] if gpus == 1 else ["/dev/shm"])
    _validate(pod)


def test_an_unknown_job_fails_when_the_dag_is_parsed():
    from tuneops.airflow.model_job import ModelJobOperator

    with pytest.raises(ValueError, match="unknown model job 'merge'.*compress.*evaluate.*register"):
        ModelJobOperator(task_id="x", job="merge", payload={})
