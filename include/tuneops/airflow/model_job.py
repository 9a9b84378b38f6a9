"""A model job (``tuneops.jobs``) as one Airflow task: the local subprocess or a pod, chosen at run time.

``ModelJobOperator(job="evaluate", payload=...)`` validates its payload (XCom dicts) as the job's
input contract, publishes it to the artifact store and runs ``python -m tuneops.jobs <job> --input
<uri>``: as a subprocess tied to the task (``on_kill`` stops its process group, the parent-death
signal covers a task killed outright), or, when the input's ``compute`` is ``kubernetes``, on a pod
shaped by its recipe's ``compute.kubernetes`` like the trainer's (``pod_settings``; ``pod_compute``
drops the GPUs of a job that loads no model), told the worker's artifact store (``pod_env``).
Either way it returns the job's summary, checked against its contract, as XCom. The task process
itself never loads model weights.
"""

from __future__ import annotations

from airflow.sdk import BaseOperator

from tuneops.airflow.trainer_pod import pod_settings
from tuneops.training.process import TrainerProcess


class ModelJobOperator(BaseOperator):
    """Run model job ``job`` on ``payload`` (its input contract, as a dict) where the input says."""

    template_fields = ("payload",)

    def __init__(self, *, job: str, payload: dict, **kwargs):
        super().__init__(**kwargs)
        from tuneops.jobs import job_spec

        job_spec(job)  # an unknown job fails when the DAG is parsed
        self.job = job
        self.payload = payload
        self._process: TrainerProcess | None = None
        self._pod = None

    def execute(self, context):
        from tuneops.jobs import parse_input, run_locally

        if parse_input(self.job, self.payload).compute == "kubernetes":
            self._pod = self.pod_operator()
            return self._summary(self._pod.execute(context))
        return run_locally(self.job, self.payload, on_start=self._started)

    def pod_operator(self):
        """The ``KubernetesPodOperator`` for this job: its command, a pod shaped by the input's recipe."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        from tuneops.jobs import job_command, parse_input, pod_compute, pod_env, publish_input

        job = parse_input(self.job, self.payload)
        command = job_command(self.job, publish_input(self.job, job))
        return KubernetesPodOperator(
            task_id=self.task_id,
            name=f"tuneops-{self.job}",
            cmds=command[:3],
            arguments=command[3:],
            do_xcom_push=True,
            reattach_on_restart=True,
            get_logs=True,
            **pod_settings(pod_compute(self.job, job), env=pod_env()),
        )

    def trigger_reentry(self, context, event):
        self._pod = self.pod_operator()
        return self._summary(self._pod.trigger_reentry(context, event))

    def _summary(self, returned) -> dict:
        """The pod's ``return.json`` checked against the job's summary contract, as the local path does."""
        from tuneops.jobs import job_spec

        return job_spec(self.job).summary.model_validate(returned).model_dump(mode="json")

    def _started(self, process: TrainerProcess) -> None:
        self._process = process

    def on_kill(self) -> None:
        if self._process is not None:
            self._process.terminate()
        if self._pod is not None:
            self._pod.on_kill()
