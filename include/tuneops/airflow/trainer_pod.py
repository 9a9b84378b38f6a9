"""The Kubernetes backend: a pod that the run's recipe shapes, built when the task runs.

The DAG is parsed before anyone picks a recipe, so the operator gets its training plan at
run time (mapped over sweep trials); it then builds the trainer command from the plan (under
``torchrun --nproc_per_node=<gpus>`` when the recipe asks for more than one GPU) and
takes image, GPUs, resources, node selector, tolerations, cache volume, credentials,
startup timeout, ``on_finish_action`` and deferrable mode from the plan's resolved recipe
(``compute.kubernetes``). ``TrainerPodOperator`` is a thin operator that builds a
``KubernetesPodOperator`` for the plan when it executes, and again on re-entry after a deferral:
the Kubernetes client and provider are imported then, never when DAGs are parsed.
``TUNEOPS_TRAINER_IMAGE`` in the worker's environment overrides the recipe's image.
"""

from __future__ import annotations

import os

from airflow.sdk import BaseOperator

from tuneops.config import KubernetesCompute
from tuneops.contracts import Plan


def pod_settings(compute: KubernetesCompute, env: dict[str, str] | None = None) -> dict:
    """KubernetesPodOperator attributes for a recipe's ``compute.kubernetes``; ``env`` adds variables.

    A pod with more than one GPU gets a memory-backed ``/dev/shm``: NCCL between the processes of
    one node needs more shared memory than the container runtime's default 64 MiB.
    """
    from airflow.providers.cncf.kubernetes.utils.pod_manager import OnFinishAction
    from kubernetes.client import models as k8s

    limits = {"memory": compute.memory_limit or compute.memory}
    if compute.gpus:
        limits["nvidia.com/gpu"] = str(compute.gpus)
    cache = compute.cache
    if cache.kind == "pvc":
        source = {
            "persistent_volume_claim": k8s.V1PersistentVolumeClaimVolumeSource(claim_name=cache.claim_name)
        }
    else:
        source = {"empty_dir": k8s.V1EmptyDirVolumeSource(size_limit=cache.size)}
    volumes = [k8s.V1Volume(name="cache", **source)]
    mounts = [k8s.V1VolumeMount(name="cache", mount_path=cache.mount_path)]
    if compute.gpus > 1:
        volumes.append(k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory")))
        mounts.append(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))
    return {
        "image": os.environ.get("TUNEOPS_TRAINER_IMAGE") or compute.image,
        "namespace": compute.namespace,
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": compute.cpu, "memory": compute.memory}, limits=limits
        ),
        "node_selector": dict(compute.node_selector),
        "tolerations": [k8s.V1Toleration(**t.model_dump(exclude_none=True)) for t in compute.tolerations],
        "volumes": volumes,
        "volume_mounts": mounts,
        "env_vars": [
            # Model downloads and the artifact cache go to the volume, not the container's disk.
            k8s.V1EnvVar(name="HF_HOME", value=f"{cache.mount_path}/huggingface"),
            k8s.V1EnvVar(name="TUNEOPS_HOME", value=f"{cache.mount_path}/tuneops"),
            *(k8s.V1EnvVar(name=name, value=value) for name, value in (env or {}).items()),
        ],
        "env_from": (
            [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=compute.secret_env))]
            if compute.secret_env
            else []
        ),
        "service_account_name": compute.service_account,
        "startup_timeout_seconds": compute.startup_timeout_seconds,
        "schedule_timeout_seconds": compute.startup_timeout_seconds,
        "on_finish_action": OnFinishAction(compute.on_finish_action),
        "deferrable": compute.deferrable,
    }


class TrainerPodOperator(BaseOperator):
    """Runs the trainer command for one training ``plan`` on a pod shaped by the plan's recipe.

    Map it over sweep trials with ``TrainerPodOperator.partial(task_id=...).expand(plan=...)``.
    Returns the trainer's summary (the pod's ``/airflow/xcom/return.json``).
    """

    template_fields = ("plan",)

    def __init__(self, *, plan: dict, pod_name: str = "tuneops-train", **kwargs):
        super().__init__(**kwargs)
        self.plan = plan
        self.pod_name = pod_name
        self._pod = None

    def pod_operator(self):
        """The ``KubernetesPodOperator`` that runs this plan: command from the plan, pod from its recipe."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        from tuneops.stages.finetune import pod_train_command

        plan = Plan.model_validate(self.plan)
        command = pod_train_command(plan)  # under torchrun for more than one GPU
        return KubernetesPodOperator(
            task_id=self.task_id,
            name=self.pod_name,
            cmds=command[:1],
            arguments=command[1:],
            do_xcom_push=True,
            reattach_on_restart=True,
            get_logs=True,
            **pod_settings(plan.recipe.compute.kubernetes),
        )

    def execute(self, context):
        self._pod = self.pod_operator()
        return self._pod.execute(context)

    def trigger_reentry(self, context, event):
        self._pod = self.pod_operator()
        return self._pod.trigger_reentry(context, event)

    def on_kill(self) -> None:
        if self._pod is not None:
            self._pod.on_kill()
