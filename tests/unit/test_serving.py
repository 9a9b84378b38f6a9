"""The serving endpoint: real uvicorn on loopback, real registry versions of tiny random models."""

import json
import re
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.tiny_models import register_tiny_version
from tuneops.core.inference_log import read_feedback, read_log
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.registry.registry import registry_client
from tuneops.serving.app import HAS_TEXT, SEED_MAX, ServerThread, ServingConfig, create_app

NAME = "serving-test"
TICKET = {"subject": "Charged twice", "input": "my card was charged twice for order 42, please refund"}
CORRECTION = json.dumps({"category": "billing", "priority": "high", "team": "payments"})
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def settings():
    settings = load_settings()
    v1 = register_tiny_version(NAME, seed=1, settings=settings)
    registry_client(settings).set_registered_model_alias(NAME, "champion", v1)
    return settings


@pytest.fixture(scope="module")
def server(settings):
    config = ServingConfig(
        model_name=NAME,
        refresh_seconds=0.3,
        log_flush_seconds=0.2,
        max_prompt_chars=2000,
        max_new_tokens_limit=32,
        max_batch_size=8,
        batch_wait_ms=30,
    )
    app = create_app(config, settings)
    with ServerThread(app) as url:
        yield url, app.state.service


def _log(settings) -> list[dict]:
    now = datetime.now(UTC)
    return read_log(ArtifactStore.from_settings(settings), now - timedelta(hours=2), now + timedelta(hours=1))


def test_serves_the_champion_in_every_input_mode(server):
    url, _ = server
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["model"] == NAME and health["alias"] == "champion"
    assert health["version"] == "1"
    for body in (
        {"inputs": TICKET},
        {"prompt": "ticket 3: my card"},
        {"messages": [{"role": "user", "content": "hi"}]},
    ):
        resp = httpx.post(f"{url}/generate", json={**body, "max_new_tokens": 6}, timeout=60)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["version"] == "1" and out["request_id"] and out["completion_tokens"] <= 6
        assert out["prompt_tokens"] > 0 and isinstance(out["text"], str)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"prompt": "   "}, 422, "prompt is empty"),
        ({"prompt": "x" * 2001}, 413, "limit is 2000"),
        ({"prompt": "hi", "max_new_tokens": 33}, 422, "over this server's limit of 32"),
        ({"prompt": "hi", "inputs": TICKET}, 422, "exactly one of prompt, messages or inputs"),
        ({}, 422, "exactly one of prompt, messages or inputs"),
        ({"prompt": "hi", "max_tokens": 3}, 422, "max_tokens: Extra inputs are not permitted"),
        ({"inputs": {"subject": "", "input": " "}}, 422, "inputs are empty"),
        ({"prompt": "hi", "temperature": -1}, 422, "temperature"),
        ({"messages": []}, 422, "messages are empty"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_to_fix(server, body, status, message):
    url, _ = server
    resp = httpx.post(f"{url}/generate", json=body, timeout=30)
    assert resp.status_code == status, resp.text
    assert message in resp.json()["error"]


def test_invalid_json_is_a_400_and_the_server_keeps_serving(server):
    url, _ = server
    resp = httpx.post(f"{url}/generate", content=b'{"prompt": "hi"', headers=JSON)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    not_utf8 = httpx.post(f"{url}/generate", content=b'{"prompt": "\xff\xfe"}', headers=JSON)
    assert not_utf8.status_code == 400 and not_utf8.json()["error"] == "There was an error parsing the body"
    assert (
        httpx.post(f"{url}/generate", json={"prompt": "hi", "max_new_tokens": 2}, timeout=30).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"prompt": "hi", "temperature": 1e-300}, "temperature", "must be 0 (greedy) or from 0.01 to 5.0"),
        ({"prompt": "hi", "seed": 2**70}, "seed", f"less than or equal to {SEED_MAX}"),
        ({"prompt": "hi", "seed": -1}, "seed", "greater than or equal to 0"),
        ({"prompt": "hi \ud800"}, "prompt", "lone UTF-16 surrogate (\\ud800) at character 3"),
        ({"inputs": {**TICKET, "subject": "\udfff"}}, "inputs.subject", "lone UTF-16 surrogate"),
        (
            {"messages": [{"role": "user", "content": "\ud800!"}]},
            "messages.0.content",
            "lone UTF-16 surrogate",
        ),
    ],
)
def test_values_that_crashed_generation_get_a_422_naming_the_field(server, body, field, reason):
    url, _ = server
    resp = httpx.post(f"{url}/generate", content=json.dumps(body).encode(), headers=JSON, timeout=30)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"].startswith(f"{field}: ") and reason in resp.json()["error"]


def test_a_conversation_the_chat_template_refuses_is_a_422(server):
    url, service = server
    tokenizer = service.current.tokenizer
    chat_template = tokenizer.chat_template
    tokenizer.chat_template = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    try:
        resp = httpx.post(
            f"{url}/generate", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30
        )
    finally:
        tokenizer.chat_template = chat_template
    assert resp.status_code == 422 and "roles must alternate" in resp.json()["error"], resp.text


def test_every_refused_or_failed_request_is_logged_with_its_error(server, settings):
    url, service = server
    answers = [
        httpx.post(f"{url}/generate", content=body, headers=JSON, timeout=30)
        for body in (
            b'{"prompt": "hi", "max_tokens": 3}',  # breaks the schema: 422
            b'{"prompt": "hi"',  # not JSON: 400
            b'{"prompt": "\xff"}',  # not UTF-8: 400
            b'{"prompt": "   "}',  # refused by the server's own check: 422
            json.dumps({"prompt": "x" * 2001}).encode(),  # too long: 413
        )
    ]
    run_batch = service.batcher.run_batch
    service.batcher.run_batch = lambda key, jobs: 1 / 0
    try:
        answers.append(httpx.post(f"{url}/generate", json={"prompt": "hi", "max_new_tokens": 2}, timeout=30))
    finally:
        service.batcher.run_batch = run_batch
    assert [a.status_code for a in answers] == [422, 400, 400, 422, 413, 500]
    assert "generation failed: ZeroDivisionError" in answers[-1].json()["error"]
    service.log.flush()
    logged = {r["request_id"]: r for r in _log(settings)}
    for answer in answers:
        record = logged[answer.json()["request_id"]]
        assert record["status"] == "error" and record["error"] == answer.json()["error"], record
        assert record["status_code"] == answer.status_code and record["model"] == NAME
    too_long = logged[answers[4].json()["request_id"]]
    assert (
        too_long["mode"] == "prompt" and too_long["prompt_chars"] == 2001 and len(too_long["prompt"]) == 2000
    )


def test_a_correction_nested_too_deep_is_refused_not_a_crash(server):
    url, _ = server
    rid = httpx.post(f"{url}/generate", json={"inputs": TICKET, "max_new_tokens": 2}, timeout=30).json()[
        "request_id"
    ]
    resp = httpx.post(f"{url}/feedback", json={"request_id": rid, "rating": "down", "correction": "[" * 5000})
    assert resp.status_code == 422 and "nested too deeply" in resp.json()["error"]


def test_long_feedback_does_not_hold_up_other_requests(server):
    url, _ = server
    rid = httpx.post(f"{url}/generate", json={"inputs": TICKET, "max_new_tokens": 2}, timeout=30).json()[
        "request_id"
    ]
    # 20k characters (the limit) of what made PII redaction quadratic: about a second each before.
    correction = json.dumps(
        {"category": "1." * 4_980 + "@" + "a." * 4_980, "priority": "high", "team": "payments"}
    )
    statuses: list[int] = []

    def send_feedback():
        answer = {"request_id": rid, "rating": "down", "correction": correction, "comment": "1." * 1000}
        statuses.append(httpx.post(f"{url}/feedback", json=answer, timeout=120).status_code)

    senders = [threading.Thread(target=send_feedback) for _ in range(8)]
    health_s: list[float] = []
    for sender in senders:
        sender.start()
    while any(sender.is_alive() for sender in senders):
        started = time.monotonic()
        assert httpx.get(f"{url}/health", timeout=60).status_code == 200
        health_s.append(time.monotonic() - started)
    for sender in senders:
        sender.join()
    assert statuses == [200] * 8
    assert max(health_s) < 1.0, f"/health took {max(health_s):.2f}s while feedback was being redacted"


def test_the_spec_lists_every_status_every_error_body_and_the_one_input_rule(server):
    url, _ = server
    spec = httpx.get(f"{url}/openapi.json").json()
    responses = {path: next(iter(ops.values()))["responses"] for path, ops in spec["paths"].items()}
    assert {path: set(codes) for path, codes in responses.items()} == {
        "/generate": {"200", "400", "413", "422", "500", "503"},
        "/feedback": {"200", "400", "404", "422", "500"},
        "/health": {"200", "503"},
    }
    for path in ("/generate", "/feedback"):
        for code, response in responses[path].items():
            body = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            assert body == (
                "ErrorResponse"
                if code != "200"
                else "GenerateResponse"
                if path == "/generate"
                else "FeedbackResponse"
            )
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    request = schemas["GenerateRequest"]
    assert [branch["required"] for branch in request["oneOf"]] == [["prompt"], ["messages"], ["inputs"]]
    inputs = next(s for s in request["properties"]["inputs"]["anyOf"] if s.get("type") == "object")
    assert inputs["required"] == ["input", "subject"]  # the served template's fields
    new_tokens = next(
        s for s in request["properties"]["max_new_tokens"]["anyOf"] if s.get("type") == "integer"
    )
    seed = next(s for s in request["properties"]["seed"]["anyOf"] if s.get("type") == "integer")
    assert new_tokens == {"type": "integer", "minimum": 1, "maximum": 32}
    assert (seed["minimum"], seed["maximum"]) == (0, SEED_MAX)
    assert {"const": 0} in request["properties"]["temperature"]["anyOf"]


def test_the_spec_calls_blank_exactly_what_the_server_strips():
    # Every code point: the spec's "has text" pattern must agree with str.strip, or valid-looking
    # prompts get refused (or blank ones accepted).
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    assert "".join(re.findall(HAS_TEXT, every)) == "".join(c for c in every if not c.isspace())


def test_concurrent_requests_are_batched_and_answer_as_if_alone(server):
    url, _ = server
    prompts = [f"ticket {i}: my card was charged twice" + " again" * (i % 3) for i in range(8)]
    alone = [
        httpx.post(f"{url}/generate", json={"prompt": p, "max_new_tokens": 8}, timeout=60).json()
        for p in prompts
    ]
    results: list = [None] * len(prompts)

    def call(i):
        results[i] = httpx.post(
            f"{url}/generate", json={"prompt": prompts[i], "max_new_tokens": 8}, timeout=60
        ).json()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(r["batch_size"] for r in results) > 1, "concurrent requests should share a batch"
    assert [r["text"] for r in results] == [a["text"] for a in alone]


def test_every_request_is_logged_with_pii_redacted_and_feedback_is_stored(server, settings):
    url, service = server
    ticket = {**TICKET, "input": "refund please, write to jane.doe@example.com or call +1 415-555-0199"}
    out = httpx.post(f"{url}/generate", json={"inputs": ticket, "max_new_tokens": 4}, timeout=30).json()
    service.log.flush()
    record = next(r for r in _log(settings) if r["request_id"] == out["request_id"])
    assert "jane.doe@example.com" not in json.dumps(record) and "555-0199" not in json.dumps(record)
    assert "<EMAIL>" in record["inputs"]["input"] and record["pii_in_prompt"] == ["email", "phone"]
    assert record["version"] == "1" and record["status"] == "ok" and record["latency_s"] > 0
    assert (
        record["prompt_tokens"] == out["prompt_tokens"]
        and record["completion_tokens"] == out["completion_tokens"]
    )

    fb = httpx.post(
        f"{url}/feedback",
        json={
            "request_id": out["request_id"],
            "rating": "down",
            "correction": CORRECTION,
            "comment": "wrong team",
        },
    )
    assert fb.status_code == 200, fb.text
    now = datetime.now(UTC)
    stored = read_feedback(
        ArtifactStore.from_settings(settings), now - timedelta(hours=1), now + timedelta(hours=1)
    )
    answer = next(f for f in stored if f["feedback_id"] == fb.json()["feedback_id"])
    assert answer["correction"] == CORRECTION and answer["request"]["inputs"]["subject"] == TICKET["subject"]


def test_feedback_must_name_a_served_request_and_fit_the_output_format(server):
    url, _ = server
    unknown = httpx.post(f"{url}/feedback", json={"request_id": "nope", "rating": "up"})
    assert unknown.status_code == 404 and "unknown request_id 'nope'" in unknown.json()["error"]
    rid = httpx.post(f"{url}/generate", json={"inputs": TICKET, "max_new_tokens": 2}, timeout=30).json()[
        "request_id"
    ]
    bad = httpx.post(f"{url}/feedback", json={"request_id": rid, "rating": "down", "correction": "billing"})
    assert bad.status_code == 422 and "not JSON" in bad.json()["error"]
    partial = httpx.post(
        f"{url}/feedback", json={"request_id": rid, "rating": "down", "correction": '{"category": "x"}'}
    )
    assert partial.status_code == 422 and "missing or empty keys: priority, team" in partial.json()["error"]
    assert httpx.post(f"{url}/feedback", json={"request_id": rid, "rating": "meh"}).status_code == 422


def test_a_moved_alias_is_picked_up_without_a_restart_and_no_request_fails_meanwhile(server, settings):
    url, _ = server
    before = httpx.post(f"{url}/generate", json={"inputs": TICKET, "max_new_tokens": 10}, timeout=30).json()
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            resp = httpx.post(f"{url}/generate", json={"inputs": TICKET, "max_new_tokens": 10}, timeout=60)
            seen.append((resp.status_code, resp.json().get("version")))

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        v2 = register_tiny_version(NAME, seed=2, settings=settings)
        registry_client(settings).set_registered_model_alias(NAME, "champion", v2)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").json()["version"] != v2:
            assert time.monotonic() < deadline, "the server did not pick up the moved alias"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join()
    after = httpx.post(f"{url}/generate", json={"inputs": TICKET, "max_new_tokens": 10}, timeout=30).json()
    assert before["version"] == "1" and after["version"] == v2 and after["text"] != before["text"]
    assert {status for status, _ in seen} == {200}, seen
    versions = [v for _, v in seen]
    assert versions == sorted(versions, key=int) and versions[-1] == v2, (
        "served versions must only move forward"
    )


def test_without_a_champion_the_server_answers_503_and_says_why(settings):
    app = create_app(ServingConfig(model_name="no-such-model", refresh_seconds=60), settings)
    with ServerThread(app) as url:
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and "has no 'champion' alias yet" in health.json()["last_error"]
        resp = httpx.post(f"{url}/generate", json={"prompt": "hi"})
        assert resp.status_code == 503 and "no-such-model" in resp.json()["error"]


def test_the_int8_variant_serves_the_same_version_quantized(settings):
    app = create_app(ServingConfig(model_name=NAME, variant="int8", refresh_seconds=60), settings)
    with ServerThread(app) as url:
        health = httpx.get(f"{url}/health").json()
        out = httpx.post(f"{url}/generate", json={"inputs": TICKET, "max_new_tokens": 4}, timeout=60)
        layer = app.state.service.current.model.model.layers[0].mlp.up_proj
    assert health["variant"] == "int8" and out.status_code == 200 and out.json()["variant"] == "int8"
    assert type(layer).__module__.startswith("torch.ao.nn.quantized.dynamic")
