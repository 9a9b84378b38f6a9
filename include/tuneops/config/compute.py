"""Where a training job runs: locally, or as a Kubernetes pod and its settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tuneops.config.loading import StrictModel


class Toleration(StrictModel):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"


class CacheVolume(StrictModel):
    """Where the pod keeps model downloads and the artifact cache: an emptyDir, or a PVC that outlives pods."""

    kind: Literal["empty_dir", "pvc"] = "empty_dir"
    size: str = "50Gi"
    claim_name: str | None = None
    mount_path: str = "/cache"

    @model_validator(mode="after")
    def _pvc_has_a_claim(self):
        if self.kind == "pvc" and not self.claim_name:
            raise ValueError("kind 'pvc' needs claim_name (the PersistentVolumeClaim to mount)")
        return self


class KubernetesCompute(StrictModel):
    """The trainer pod: image, GPUs and where it may run, resources, cache, credentials, lifecycle."""

    image: str = "ghcr.io/tuneops/trainer:0.1.0"
    namespace: str = "tuneops"
    gpus: int = Field(1, ge=0)
    cpu: str = "4"
    memory: str = "32Gi"
    memory_limit: str | None = None  # defaults to ``memory``
    node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu")]
    service_account: str | None = None
    secret_env: str | None = "tuneops-credentials"  # a Secret whose keys become env (AWS_*, MLFLOW_*)
    cache: CacheVolume = CacheVolume()
    startup_timeout_seconds: int = Field(900, gt=0)
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod"] = "delete_succeeded_pod"
    deferrable: bool = True


class ComputeConfig(StrictModel):
    backend: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesCompute = KubernetesCompute()
