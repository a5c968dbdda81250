"""The live Label Studio connector against a real Label Studio 1.23.2 on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.label_studio.api import LabelStudioAPIError, LabelStudioClient
from tasks.label_studio.pull import Watermark, pull_changed_tasks

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label-studio"
CONFIG = (FIXTURES / "label_studio_config.xml").read_text()
EXPORT = json.loads((FIXTURES / "export_json.json").read_text())
WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]


def box(label: str, region: str = "r1") -> dict[str, Any]:
    return {
        "id": region,
        "from_name": "bbox",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 1280,
        "original_height": 720,
        "image_rotation": 0,
        "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rotation": 0, "rectanglelabels": [label]},
    }


def weather(choice: str) -> dict[str, Any]:
    return {"id": "w1", "from_name": "weather", "to_name": "image", "type": "choices", "value": {"choices": [choice]}}


def task(n: int, caption: str = "", **extra: Any) -> dict[str, Any]:
    return {"data": {"image": f"https://example.com/frames/{n:06d}.jpg", "caption": caption}, **extra}


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # Answer before anything else: Label Studio waits at most 1 s (WEBHOOK_TIMEOUT).
                self.send_response(200)
                self.end_headers()
                with receiver._arrived:
                    receiver.payloads.append(json.loads(body))
                    receiver._arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, matches: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        with self._arrived:
            found = self._arrived.wait_for(lambda: next((p for p in self.payloads if matches(p)), None), timeout)
        assert found, f"no matching webhook within {timeout} s; got {[p.get('action') for p in self.payloads]}"
        return found

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def client(label_studio: tuple[str, str]) -> Iterator[LabelStudioClient]:
    base_url, token = label_studio
    with LabelStudioClient(base_url, token) as ls:
        yield ls


def annotations_by_task(tasks: list[dict[str, Any]]) -> dict[int, set[int]]:
    return {t["id"]: {a["id"] for a in t["annotations"]} for t in tasks}


def test_pull_returns_each_change_once_and_shows_deletions(
    client: LabelStudioClient, webhooks: WebhookReceiver
) -> None:
    project = client.create_project("labelhouse live pull", CONFIG)["id"]
    client.create_webhook(project, webhooks.url, actions=WEBHOOK_ACTIONS)
    prediction = {"model_version": "m1", "score": 0.9, "result": [weather("rain")]}
    t1, t2, t3, t4 = client.import_tasks(
        project,
        [task(1, "Ada lives in Paris 🗼"), task(2), task(3, "x", predictions=[prediction]), task(4, "ünïcode")],
    )
    a1 = client.create_annotation(t1, [box("car"), weather("sunny")], lead_time=4.5)["id"]
    a2 = client.create_annotation(t1, [box("pedestrian", "r2")])["id"]
    a3 = client.create_annotation(t2, [weather("fog")])["id"]
    a4 = client.create_annotation(t3, [], was_cancelled=True)["id"]

    created = webhooks.wait_for(lambda p: p["action"] == "ANNOTATION_CREATED" and p["annotation"]["id"] == a1)
    assert created["task"]["id"] == t1

    tasks, watermark = pull_changed_tasks(client, project)
    assert [t["id"] for t in tasks] == [t4, t1, t2, t3]  # by updated_at: t4 was never annotated
    assert annotations_by_task(tasks) == {t1: {a1, a2}, t2: {a3}, t3: {a4}, t4: set()}
    # Exactly the shape of a JSON export file, down to the annotation fields.
    assert {frozenset(t) for t in tasks} == {frozenset(EXPORT[0])}
    by_id = {t["id"]: t for t in tasks}
    assert set(by_id[t1]["annotations"][0]) == set(EXPORT[0]["annotations"][0])
    assert by_id[t1]["data"]["caption"] == "Ada lives in Paris 🗼"
    assert len(by_id[t3]["predictions"]) == 1
    assert by_id[t3]["annotations"][0]["was_cancelled"] is True

    watermark = Watermark.from_json(watermark.to_json())
    assert pull_changed_tasks(client, project, watermark)[0] == []

    client.update_annotation(a1, result=[box("cyclist"), weather("sunny")])
    client.delete_annotation(a3)
    webhooks.wait_for(lambda p: p["action"] == "ANNOTATION_UPDATED" and p["annotation"]["id"] == a1)
    webhooks.wait_for(lambda p: p["action"] == "ANNOTATIONS_DELETED" and p["annotations"] == [{"id": a3}])

    # A pull whose results were lost (crash before commit) is simply repeated from the same watermark.
    lost, _ = pull_changed_tasks(client, project, watermark)
    tasks, watermark = pull_changed_tasks(client, project, watermark)
    assert [t["id"] for t in lost] == [t["id"] for t in tasks] == [t1, t2]
    assert annotations_by_task(tasks) == {t1: {a1, a2}, t2: set()}
    relabelled = next(a for a in tasks[0]["annotations"] if a["id"] == a1)
    assert relabelled["result"][0]["value"]["rectanglelabels"] == ["cyclist"]
    assert pull_changed_tasks(client, project, watermark)[0] == []

    # A deleted task leaves nothing to pull; the id listing shows it gone.
    client.delete_task(t4)
    tasks, watermark = pull_changed_tasks(client, project, watermark)
    assert tasks == []
    assert client.list_task_ids(project) == [t1, t2, t3]


def test_pull_pages_through_tasks_sharing_one_updated_at(
    client: LabelStudioClient, label_studio: tuple[str, str]
) -> None:
    project = client.create_project("labelhouse live ties", CONFIG)["id"]
    ids = client.import_tasks(project, [task(n, f"task {n}") for n in range(5)])
    for n, task_id in enumerate(ids):
        client.create_annotation(task_id, [weather("sunny")], lead_time=float(n))
    tasks, watermark = pull_changed_tasks(client, project, page_size=2)
    assert sorted(t["id"] for t in tasks) == ids
    assert all(len(t["annotations"]) == 1 for t in tasks)

    # This bulk action stamps every task it touches with one updated_at: a tie group over 2 pages.
    base_url, token = label_studio
    response = httpx.post(
        f"{base_url}/api/dm/actions",
        params={"id": "delete_tasks_annotations", "project": project},
        json={"selectedItems": {"all": True, "excluded": []}},
        headers={"Authorization": f"Token {token}"},
    )
    response.raise_for_status()
    versions = client.list_task_versions(project, since=None, inclusive=True, limit=10)
    assert len({v.updated_at for v in versions}) == 1

    tasks, watermark = pull_changed_tasks(client, project, watermark, page_size=2)
    assert sorted(t["id"] for t in tasks) == ids
    assert all(t["annotations"] == [] for t in tasks)
    assert pull_changed_tasks(client, project, watermark, page_size=2)[0] == []


def test_errors_name_the_call_and_what_to_do(client: LabelStudioClient, label_studio: tuple[str, str]) -> None:
    base_url, _ = label_studio
    with LabelStudioClient(base_url, "not-the-token") as stranger, pytest.raises(LabelStudioAPIError) as denied:
        stranger.list_task_ids(1)
    assert denied.value.status == 401
    assert f"{base_url}/api/tasks/" in str(denied.value) and "Token <token>" in str(denied.value)

    with pytest.raises(LabelStudioAPIError, match=r"HTTP 404.*does not exist") as missing:
        client.delete_annotation(987654)
    assert missing.value.url == f"{base_url}/api/annotations/987654/"

    with pytest.raises(LabelStudioAPIError, match=r"title.*at least 3 characters.*HTTP 400"):
        client.create_project("ab", CONFIG)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with LabelStudioClient(closed, "t") as nowhere, pytest.raises(LabelStudioAPIError, match="Is Label Studio"):
        nowhere.list_task_ids(1)
