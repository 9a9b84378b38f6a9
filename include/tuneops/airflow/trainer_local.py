"""The local backend as an Airflow operator: the trainer subprocess lives and dies with its task.

``LocalTrainerOperator`` runs ``tuneops.stages.finetune.train_locally`` for one plan (mapped over sweep
trials like the pod operator) and keeps the ``TrainerProcess`` it starts, so ``on_kill`` (the
task killed from the UI, timed out, or its worker shutting down) stops the trainer's whole
process group. A task process killed outright takes the trainer with it through the parent-death
signal (``tuneops.training.process``); the retry resumes from the last complete checkpoint, and
the output's lease keeps two trainers from ever writing it at once.
"""

from __future__ import annotations

from airflow.sdk import BaseOperator

from tuneops.training.process import TrainerProcess


class LocalTrainerOperator(BaseOperator):
    """Train one plan as a local subprocess; returns the trainer's summary (XCom)."""

    template_fields = ("plan",)

    def __init__(self, *, plan: dict, **kwargs):
        super().__init__(**kwargs)
        self.plan = plan
        self._trainer: TrainerProcess | None = None

    def execute(self, context) -> dict:
        from tuneops.stages.finetune import train_locally

        return train_locally(self.plan, on_start=self._started).model_dump(mode="json")

    def _started(self, trainer: TrainerProcess) -> None:
        self._trainer = trainer

    def on_kill(self) -> None:
        if self._trainer is not None:
            self._trainer.terminate()
