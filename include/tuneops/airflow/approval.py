"""The human approval step before a challenger becomes champion: Airflow's HITL ``ApprovalOperator``
that also keeps the reviewer's answer.

On Reject, ``ApprovalOperator`` skips its downstream tasks and leaves no return value in XCom,
so the rejection (who, when, why) would be lost to the task that records it on the model
version. This subclass pushes every answer under the ``review`` XCom key first.
"""

from __future__ import annotations

from airflow.providers.standard.operators.hitl import ApprovalOperator

REVIEW_KEY = "review"


class PromotionApproval(ApprovalOperator):
    def execute_complete(self, context, event: dict):
        if "error" not in event:
            context["ti"].xcom_push(
                key=REVIEW_KEY,
                value={
                    "chosen_options": list(event["chosen_options"]),
                    "params_input": dict(event.get("params_input") or {}),
                    "responded_by_user": event.get("responded_by_user"),
                    "responded_at": str(event.get("responded_at")),
                    "timed_out": bool(event.get("timedout")),
                },
            )
        return super().execute_complete(context, event)
