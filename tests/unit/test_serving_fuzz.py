"""The serving endpoint against its own OpenAPI spec: schemathesis, every check, on loopback.

Requests are generated from ``/openapi.json`` (valid and invalid ones, boundary values,
and chains that feed a ``/generate`` answer's ``request_id`` to ``/feedback``); every answer
must be what the spec promises (a listed status, the declared body and content type), invalid
requests must be refused, valid ones accepted, and no request may get a 5xx.

schemathesis runs through its engine (what ``st run`` drives): its pytest loader does not
work with pytest 9.2 (it sets ``Function._nodeid``, which pytest removed).
"""

from collections import Counter

import pytest
import schemathesis
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import EngineFinished, FatalError, NonFatalError, ScenarioFinished

from tests.support.tiny_models import register_tiny_version
from tuneops.core.settings import load_settings
from tuneops.registry.registry import registry_client
from tuneops.serving.app import ServerThread, ServingConfig, create_app

NAME = "serving-fuzz"
# Valid data must get a 2xx, or 404 for a feedback request_id the server never served. Two
# refusals no schema can rule out: a prompt too long in tokens for the model's context (413),
# and a correction that is not in the model's output format, JSON inside a string (422).
GENERATE_ACCEPTS = ["2xx", "404", "413"]
FEEDBACK_ACCEPTS = ["2xx", "404", "422"]


@pytest.fixture(scope="module")
def url():
    settings = load_settings()
    version = register_tiny_version(NAME, seed=3, settings=settings)
    registry_client(settings).set_registered_model_alias(NAME, "champion", version)
    config = ServingConfig(
        model_name=NAME,
        refresh_seconds=60,
        log_flush_seconds=0.5,
        max_prompt_chars=2000,
        max_new_tokens_limit=8,
        max_batch_size=4,
        batch_wait_ms=1,
    )
    with ServerThread(create_app(config, settings)) as url:
        yield url


def _run(schema) -> tuple[list[str], Counter]:
    """Problems found (one line each, with a curl command to reproduce), and answers by (path, status)."""
    problems: list[str] = []
    answers: Counter = Counter()
    for event in from_schema(schema).execute():
        if isinstance(event, ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                status = interaction.response.status_code if interaction.response else None
                answers[(interaction.request.uri.rsplit("/", 1)[-1], status)] += 1
            if event.status == Status.FAILURE:
                for checks in event.recorder.checks.values():
                    for check in checks:
                        if check.failure_info is not None:
                            failure = check.failure_info.failure
                            problems.append(
                                f"{event.recorder.label} [{check.name}] {failure.title}: {failure.message}\n"
                                f"  {check.failure_info.code_sample}"
                            )
        elif isinstance(event, NonFatalError):
            problems.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, FatalError):
            problems.append(f"schemathesis failed: {event.exception!r}")
        elif isinstance(event, EngineFinished):
            problems += [f"{failure.title}: {failure.message}" for failure in event.failures]
    return problems, answers


def test_every_answer_is_what_the_spec_promises(url):
    config = schemathesis.Config.from_dict(
        {
            "seed": 15,
            "continue-on-failure": True,
            "generation": {"max-examples": 40, "deterministic": True, "database": "none"},
            "operations": [
                {
                    "include-path": "/generate",
                    "checks": {"positive_data_acceptance": {"expected-statuses": GENERATE_ACCEPTS}},
                },
                {
                    "include-path": "/feedback",
                    "checks": {"positive_data_acceptance": {"expected-statuses": FEEDBACK_ACCEPTS}},
                },
            ],
        }
    )
    problems, answers = _run(schemathesis.openapi.from_url(f"{url}/openapi.json", config=config))
    assert not problems, "\n".join(problems)
    assert not [key for key in answers if key[1] is None or key[1] >= 500], answers
    # The run reached the model and the feedback store, not only the validators.
    assert answers[("generate", 200)] >= 20 and answers[("feedback", 200)] >= 20, answers
    assert answers[("generate", 422)] >= 20 and answers[("feedback", 422)] >= 20, answers
