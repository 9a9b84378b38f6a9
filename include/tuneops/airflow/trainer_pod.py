"""The Kubernetes backend: a KubernetesPodOperator whose pod the run's recipe shapes.

The DAG is parsed before anyone picks a recipe, so the operator gets its training plan at
run time (mapped over sweep trials); it then builds the trainer command from the plan and
takes image, GPUs, resources, node selector, tolerations, cache volume, credentials,
startup timeout, ``on_finish_action`` and deferrable mode from the recipe's
``compute.kubernetes``. It does so
again on re-entry after a deferral, since Airflow then builds a fresh operator.
``TUNEOPS_TRAINER_IMAGE`` in the worker's environment overrides the recipe's image.
"""

from __future__ import annotations

import os

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.pod_manager import OnFinishAction
from kubernetes.client import models as k8s

from tuneops.config import KubernetesCompute, load_recipe


def pod_settings(compute: KubernetesCompute) -> dict:
    """KubernetesPodOperator attributes for a recipe's ``compute.kubernetes``."""
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
    return {
        "image": os.environ.get("TUNEOPS_TRAINER_IMAGE") or compute.image,
        "namespace": compute.namespace,
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": compute.cpu, "memory": compute.memory}, limits=limits
        ),
        "node_selector": dict(compute.node_selector),
        "tolerations": [k8s.V1Toleration(**t.model_dump(exclude_none=True)) for t in compute.tolerations],
        "volumes": [k8s.V1Volume(name="cache", **source)],
        "volume_mounts": [k8s.V1VolumeMount(name="cache", mount_path=cache.mount_path)],
        "env_vars": [
            # Model downloads and the artifact cache go to the volume, not the container's disk.
            k8s.V1EnvVar(name="HF_HOME", value=f"{cache.mount_path}/huggingface"),
            k8s.V1EnvVar(name="TUNEOPS_HOME", value=f"{cache.mount_path}/tuneops"),
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


class TrainerPodOperator(KubernetesPodOperator):
    """Runs the trainer command for one training ``plan`` on a pod shaped by the plan's recipe.

    Map it over sweep trials with ``TrainerPodOperator.partial(task_id=...).expand(plan=...)``.
    """

    def __init__(self, *, plan: dict, **kwargs):
        kwargs.setdefault("name", "tuneops-train")
        super().__init__(
            cmds=["python", "-m", "tuneops.training.train"],
            do_xcom_push=True,
            reattach_on_restart=True,
            get_logs=True,
            **kwargs,
        )
        self.plan = plan

    def shape(self, plan: dict) -> None:
        """Set the command's arguments from ``plan`` and the pod's attributes from its recipe."""
        from tuneops.pipeline import train_command

        command = train_command(plan)
        self.cmds, self.arguments = command[:3], command[3:]
        recipe = load_recipe(plan["recipe"], plan.get("overrides") or None)
        for name, value in pod_settings(recipe.compute.kubernetes).items():
            setattr(self, name, value)
        self._is_delete_operator_pod = self.on_finish_action == OnFinishAction.DELETE_POD

    def execute(self, context):
        self.shape(self.plan)
        return super().execute(context)

    def trigger_reentry(self, context, event):
        self.shape(self.plan)
        return super().trigger_reentry(context, event)
