"""Against a real Prefect server with `labelhouse serve` running: committed events start the refresh
deployment, webhooks start the webhook deployment, and the Prefect UI shows an ingest run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _flowkit import CONFIG, EXPORT, FIXTURES, LABELHOUSE, REPO, LabelStudio, PrefectServer, Served, free_port, wait_for
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.events import Event
from prefect.settings import PREFECT_API_URL, temporary_settings

from storage import Catalog, DatasetNotFoundError
from tasks.flow_tasks.events import deliver_webhook
from tasks.flow_tasks.webhook_inbox import applied_seq, inbox_name

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SECRET = "chain-secret"
EVENTS = [json.loads(line)["payload"] for line in (FIXTURES / "webhook_events.jsonl").read_text().splitlines()]
RUN_TIMEOUT = 420  # served runs are subprocesses that import everything; small machines are slow at that


@contextmanager
def client_of(server: PrefectServer) -> Iterator[SyncPrefectClient]:
    """A sync Prefect client of the test's server (the harness may point this process elsewhere)."""
    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
        yield client


def emit_webhook(server: PrefectServer, payload: dict[str, Any], catalog_uri: str, project: str) -> Event:
    """Hand a webhook for `project` to Prefect as the receiver does (a receiver serves one project)."""

    async def deliver() -> Event:
        async with get_client() as client:
            return await deliver_webhook(payload, catalog_uri, project, client)

    with temporary_settings({PREFECT_API_URL: server.api_url}):
        return asyncio.run(deliver())


def runs_of(server: PrefectServer, flow_name: str, catalog: str) -> list[FlowRun]:
    with client_of(server) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return [run for run in runs if run.parameters.get("catalog") == catalog]


@pytest.fixture(scope="module")
def ingested(served: Served, prefect_server: PrefectServer) -> dict[str, Any]:
    """`labelhouse ingest label-studio` of the fixture export into the served catalog, as a user runs it."""
    command = [LABELHOUSE, "ingest", "label-studio", str(EXPORT), "--catalog", served.catalog]
    command += ["--project", served.project, "--config", str(CONFIG), "--json"]
    done = subprocess.run(command, env=prefect_server.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_committed_events_start_the_refresh_deployment(
    ingested: dict[str, Any], served: Served, prefect_server: PrefectServer
) -> None:
    with client_of(prefect_server) as client:
        assert client.read_flow_run(ingested["flow_run_id"]).state_type.value == "COMPLETED"

    def refreshed() -> bool:
        runs = runs_of(prefect_server, "refresh-dataset", Catalog(served.catalog).uri)
        return len([r for r in runs if r.state_type is not None and r.state_type.value == "COMPLETED"]) == 3

    wait_for(refreshed, RUN_TIMEOUT, log=served.log)
    runs = runs_of(prefect_server, "refresh-dataset", Catalog(served.catalog).uri)
    assert {(r.parameters["dataset"], r.parameters["snapshot_id"]) for r in runs} == {
        ("demo__items", 1),
        ("demo__annotations", 1),
        ("demo__predictions", 1),
    }
    cat = Catalog(served.catalog)
    assert all(cat.dataset(f"demo__{t}").tags() == {"refreshed": 1} for t in ("items", "annotations", "predictions"))


def dump_dom(url: str) -> str:
    done = subprocess.run(
        [str(REPO / "infra" / "browser.sh"), "dump-dom", url], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_prefect_ui_shows_the_ingest_run_and_its_artifact(
    ingested: dict[str, Any], prefect_server: PrefectServer
) -> None:
    with client_of(prefect_server) as client:
        run = client.read_flow_run(ingested["flow_run_id"])
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    summary = next(a for a in artifacts if a.key == "demo-commit-summary")
    run_page = dump_dom(f"{prefect_server.ui_url}/runs/flow-run/{run.id}")
    assert run.name in run_page
    artifact_page = dump_dom(f"{prefect_server.ui_url}/artifacts/artifact/{summary.id}")
    assert "demo-commit-summary" in artifact_page and "demo__annotations" in artifact_page


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def receiver(served: Served, prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`labelhouse webhooks` for the served catalog (project `hooks`); yields its webhook URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("webhooks") / "webhooks.log"
    command = [LABELHOUSE, "webhooks", "--secret", SECRET, "--port", str(port)]
    command += ["--catalog", served.catalog, "--project", "hooks"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=prefect_server.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/health"), 180, process, log)
        yield f"http://127.0.0.1:{port}/label-studio"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def annotation_labels(catalog: str, project: str) -> dict[str, list[str]]:
    try:
        rows = Catalog(catalog).dataset(f"{project}__annotations").read_all(columns=["submission_id", "labels"])
    except DatasetNotFoundError:
        return {}
    return {r["submission_id"]: r["labels"] for r in rows.to_pylist()}


def test_a_burst_of_webhooks_starts_few_runs_of_the_webhook_deployment_which_apply_all(
    receiver: str, served: Served, prefect_server: PrefectServer
) -> None:
    headers = {"Content-Type": "application/json", "X-Labelhouse-Secret": SECRET}
    assert post(receiver, json.dumps(EVENTS[0]).encode(), {"Content-Type": "application/json"})[0] == 401
    assert post(receiver, b"{not json", headers)[0] == 400
    burst = EVENTS[:7]  # TASKS_CREATED of 3 tasks, annotations 1-5 created, annotation 4 updated to "fog"
    for payload in burst:
        status, answer = post(receiver, json.dumps(payload).encode(), headers)
        assert status == 202, answer
    other = emit_webhook(prefect_server, EVENTS[1], Catalog(served.catalog).uri, "other")  # in the same 5 s

    def all_applied() -> bool:
        # A batch's sync state is committed after its rows (see tasks.flow_tasks.sync_state): wait for both.
        cat = Catalog(served.catalog)
        items = cat.dataset("hooks__items").count() if "hooks__items" in cat else 0
        labels = annotation_labels(served.catalog, "hooks")
        content = items == 3 and len(labels) == 5 and labels["annotation:4"] == ["fog"]
        return content and applied_seq(cat, "hooks") == len(burst)

    wait_for(all_applied, RUN_TIMEOUT, log=served.log)
    # The trigger throttles per project: the other project's webhook started a run of its own.
    wait_for(lambda: "annotation:1" in annotation_labels(served.catalog, "other"), RUN_TIMEOUT, log=served.log)
    cat = Catalog(served.catalog)
    assert cat.dataset(inbox_name("hooks")).count() == len(burst)
    assert applied_seq(cat, "hooks") == len(burst)
    runs = runs_of(prefect_server, "apply-label-studio-webhooks", cat.uri)
    triggered = [r for r in runs if r.parameters.get("event_id")]  # the others are the sweep schedule's
    assert 1 <= len(triggered) < len(burst)  # a run collects the webhooks of its burst; refused requests start none
    assert {r.parameters["project"] for r in triggered} == {"hooks", "other"}
    assert str(other.id) in {r.parameters["event_id"] for r in triggered}


def test_a_real_label_studio_sends_webhooks_that_get_committed(
    receiver: str, served: Served, label_studio: LabelStudio
) -> None:
    from tasks.label_studio.api import LabelStudioClient

    with LabelStudioClient(label_studio.base_url, label_studio.token) as ls:
        project = ls.create_project("webhooks", CONFIG.read_text())
        ls.create_webhook(
            project["id"], receiver, actions=["ANNOTATION_CREATED"], headers={"X-Labelhouse-Secret": SECRET}
        )
        [task_id] = ls.import_tasks(project["id"], [{"data": {"image": "https://example.com/a.jpg", "caption": ""}}])
        box = {
            "id": "r1",
            "from_name": "bbox",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": 640,
            "original_height": 480,
            "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["car"]},
        }
        annotation = ls.create_annotation(task_id, [box])
    wanted = f"annotation:{annotation['id']}"
    wait_for(lambda: annotation_labels(served.catalog, "hooks").get(wanted) == ["car"], RUN_TIMEOUT, log=served.log)
