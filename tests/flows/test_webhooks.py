"""The webhook receiver's answers: bad requests get a 4xx with a reason and emit nothing; accepted
webhooks are emitted once each, as Label Studio sent them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _flowkit import FIXTURES
from fastapi.testclient import TestClient

from flows.webhooks import PATH, SECRET_HEADER, create_app

SECRET = "s3cret-for-tests"
EVENTS = [json.loads(line)["payload"] for line in (FIXTURES / "webhook_events.jsonl").read_text().splitlines()]
JSON = {"Content-Type": "application/json"}


class Recorder:
    """Stands in for the Prefect event emitter: records (payload, catalog, project)."""

    def __init__(self) -> None:
        self.emitted: list[tuple[dict[str, Any], str, str]] = []

    def __call__(self, payload: dict[str, Any], catalog: str, project: str) -> None:
        self.emitted.append((payload, catalog, project))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> TestClient:
    return TestClient(
        create_app(secret=SECRET, catalog="/data/lakehouse", project="demo", max_body_bytes=64_000, emit=recorder)
    )


def post(client: TestClient, body: bytes | str, headers: dict[str, str]) -> Any:
    return client.post(PATH, content=body, headers=headers)


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        (JSON, json.dumps(EVENTS[1]), 401, "missing the X-Labelhouse-Secret header"),
        ({**JSON, SECRET_HEADER: "guess"}, json.dumps(EVENTS[1]), 403, "wrong X-Labelhouse-Secret"),
        ({SECRET_HEADER: SECRET, "Content-Type": "text/plain"}, json.dumps(EVENTS[1]), 415, "send application/json"),
        ({SECRET_HEADER: SECRET}, json.dumps(EVENTS[1]), 415, "content type 'none'"),
        ({**JSON, SECRET_HEADER: SECRET}, '{"action": "ANNOTATION_CREATED", ', 400, "malformed JSON"),
        ({**JSON, SECRET_HEADER: SECRET}, b"\xff\xfe{}", 400, "malformed JSON"),
        ({**JSON, SECRET_HEADER: SECRET}, "[1, 2]", 422, "not a Label Studio webhook"),
        ({**JSON, SECRET_HEADER: SECRET}, '{"tasks": []}', 422, "not a Label Studio webhook"),
        ({**JSON, SECRET_HEADER: SECRET}, '{"action": "TASKS_DELETED", "tasks": [7]}', 422, "expected an object"),
        ({**JSON, SECRET_HEADER: SECRET}, json.dumps({"action": "ANNOTATION_CREATED", "task": {}}), 422, "task"),
        ({**JSON, SECRET_HEADER: SECRET}, json.dumps({"action": "X", "pad": "x" * 70_000}), 413, "over the limit"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason_and_emit_nothing(
    client: TestClient, recorder: Recorder, headers: dict[str, str], body: bytes | str, status: int, reason: str
) -> None:
    response = post(client, body, headers)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert recorder.emitted == []


def test_a_body_without_length_is_limited_as_it_streams(client: TestClient, recorder: Recorder) -> None:
    chunks = (b"x" * 10_000 for _ in range(10))
    response = client.post(PATH, content=chunks, headers={**JSON, SECRET_HEADER: SECRET})
    assert response.status_code == 413 and recorder.emitted == []


def test_accepted_webhooks_are_emitted_as_sent(client: TestClient, recorder: Recorder) -> None:
    for payload in EVENTS:
        response = post(client, json.dumps(payload), {**JSON, SECRET_HEADER: SECRET})
        assert response.status_code == 202, response.text
        assert response.json()["action"] == payload["action"]
    assert [p for p, _, _ in recorder.emitted] == EVENTS
    assert {(catalog, project) for _, catalog, project in recorder.emitted} == {("/data/lakehouse", "demo")}


def test_webhooks_that_change_no_labels_are_acknowledged_not_emitted(client: TestClient, recorder: Recorder) -> None:
    response = post(client, '{"action": "PROJECT_UPDATED", "project": {"id": 1}}', {**JSON, SECRET_HEADER: SECRET})
    assert response.status_code == 200 and response.json()["accepted"] is False
    assert recorder.emitted == []


def test_an_empty_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        create_app(secret="", catalog="c", project="p")
