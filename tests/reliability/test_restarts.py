"""Service restarts with work in flight, and the webhook receiver under load.

Against a real Prefect server on 127.0.0.1 with `labelhouse serve` running:

- the Prefect server is restarted while a served ingest run is running: the run completes (or, if it
  cannot, is retried as an operator would) and its rows land exactly once;
- the webhook receiver is SIGKILLed and restarted while webhooks are being sent by a sender that resends
  on connection errors and 5xx (Label Studio itself sends once, with a 1 s timeout: a resending proxy or
  an operator's resend is what repeats a webhook), some webhooks deliberately sent twice: each webhook is
  one Prefect event and is applied once by the served webhook deployment, in fewer runs than webhooks;
- 2,000 webhooks at 50 connections (bench/webhooks_load.py): every accepted webhook is one event; the
  webhook flow applies them all, runs again, and each is applied exactly once.

The fast tests at the end check the two keys that make a repeated webhook harmless, without services.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from exactly_once import audit
from prefect_kit import LABELHOUSE, REPO, Prefect, Process, free_port, prefect_server, start_process, wait_until
from report import ProcessFault, WebhookLoad, record

from bench.webhooks_load import (
    SECRET,
    Sent,
    applied_ranges,
    count_events,
    expected_ids,
    make_webhooks,
    run,
    send_all,
    wait_healthy,
)
from storage import Catalog
from storage.groundtruth import dataset_names
from tasks.commit import commit_changes
from tasks.flow_tasks.events import webhook_event
from tasks.flow_tasks.label_studio import export_batch, read_config, webhook_batch
from tasks.flow_tasks.webhook_inbox import applied_seq, inbox_name

FIXTURES = REPO / "tests" / "fixtures" / "label-studio"
EXPORT, CONFIG = FIXTURES / "export_json.json", FIXTURES / "label_studio_config.xml"
RUN_TIMEOUT = 900.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SERVED_PROJECT = "served"
HOOKS_PROJECT = "hooks"
WEBHOOKS = 6  # served runs and refresh runs take about a minute each on 2 busy cores
RESENT = 3  # the first RESENT webhooks are sent twice on purpose
RECEIVER_KILLS = 3
LOAD_WEBHOOKS, LOAD_CONCURRENCY = 2000, 50
# The tests wait for served runs up to RUN_TIMEOUT each; pyproject's 600 s default cut them off on a busy host.
SERVICE_TIMEOUT = int(RUN_TIMEOUT * 3)


@dataclass(frozen=True)
class Served:
    catalog: str
    process: Process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefect]:
    with prefect_server(tmp_path_factory.mktemp("restarts")) as running:
        yield running


@pytest.fixture(scope="module")
def served(server: Prefect, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`labelhouse serve` for a fresh catalog, its deployments registered with the module's server."""
    work = tmp_path_factory.mktemp("served")
    catalog = str(work / "lake")
    command = [LABELHOUSE, "serve", "--catalog", catalog, "--project", SERVED_PROJECT]
    process = start_process(command, server.env, work / "serve.log")
    try:
        wait_until(lambda: "polling for scheduled runs" in process.tail(100_000), 300, "labelhouse serve", process)
        yield Served(catalog, process)
    finally:
        process.stop()


def run_state(server: Prefect, run_id: Any) -> str | None:
    """The run's state type, or None while the API cannot answer (it is being restarted)."""
    try:
        with server.client() as client:
            state = client.read_flow_run(run_id).state_type
    except Exception:
        return None
    return state.value if state is not None else None


def webhook_runs(server: Prefect, catalog_uri: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with server.client() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["apply-label-studio-webhooks"])), limit=200
        )
    # Runs a webhook triggered (the sweep schedule's have no event_id).
    return [r for r in runs if r.parameters.get("catalog") == catalog_uri and r.parameters.get("event_id")]


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(SERVICE_TIMEOUT)
def test_a_prefect_server_restart_during_a_served_run_lands_it_once(server: Prefect, served: Served) -> None:
    from prefect.states import AwaitingRetry

    with server.client() as client:
        deployment = client.read_deployment_by_name("ingest-label-studio-export/on-demand")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"path": str(EXPORT), "config": str(CONFIG)}
        )
    wait_until(lambda: run_state(server, run.id) == "RUNNING", RUN_TIMEOUT, "the served run to start", served.process)
    server.restart(down_seconds=3.0)
    wait_until(lambda: run_state(server, run.id) in TERMINAL, RUN_TIMEOUT, "the run to end", served.process)
    first_outcome = run_state(server, run.id) or "unknown"
    if first_outcome != "COMPLETED":  # what an operator does with a crashed run: Retry
        with server.client() as client:
            client.set_flow_run_state(run.id, AwaitingRetry(), force=True)
        wait_until(lambda: run_state(server, run.id) in TERMINAL, RUN_TIMEOUT, "the retried run", served.process)
    assert run_state(server, run.id) == "COMPLETED", served.process.tail()
    assert served.process.popen.poll() is None, "labelhouse serve died with the server:\n" + served.process.tail()
    names = dataset_names(SERVED_PROJECT)
    changes = export_batch(EXPORT, read_config(CONFIG), None).changes
    ids = {names[t]: getattr(changes, t)["id"].to_pylist() for t in ("items", "annotations", "predictions")}
    result = audit(served.catalog, ids, {name: 1 for name in ids})
    record(
        "process",
        ProcessFault(
            scenario="Prefect server restarted during a served ingest run",
            trials=1,
            changes=1,
            rows=result.rows,
            rows_lost=result.rows_lost,
            rows_duplicated=result.rows_duplicated,
            applied_twice=result.applied_twice,
            problems=len(result.problems),
            detail=f"Label Studio export via `labelhouse serve`; the run {first_outcome.lower()}"
            + ("" if first_outcome == "COMPLETED" else " and was retried"),
        ),
    )
    assert result.ok, result


async def _kill_and_restart(receiver: list[Process], start: Any, kills: int, rng: random.Random) -> int:
    """SIGKILL the receiver `kills` times at random moments, starting it again each time."""
    done = 0
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        receiver[0].kill()
        done += 1
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        receiver[0] = await asyncio.to_thread(start)
    return done


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(SERVICE_TIMEOUT)
def test_webhooks_in_flight_across_receiver_kills_apply_exactly_once(
    server: Prefect, served: Served, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/label-studio"
    command = [LABELHOUSE, "webhooks", "--secret", SECRET, "--port", str(port)]
    command += ["--catalog", served.catalog, "--project", HOOKS_PROJECT]

    def start() -> Process:
        process = start_process(command, server.env, tmp_path / "receiver.log")
        wait_healthy(port, process.popen, process.log)
        return process

    payloads = make_webhooks(WEBHOOKS, first_task=5000)
    rng = random.Random(7)

    async def traffic() -> tuple[list[Sent], int]:
        # Paced so that webhooks are in flight across every kill; the resends arrive last.
        async def paced(batch: list[dict[str, Any]]) -> Sent:
            sent = []
            for payload in batch:
                sent.append(await send_all(url, [payload], 1, retry_for=RUN_TIMEOUT))
                await asyncio.sleep(rng.uniform(0.0, 1.0))
            return _merge(sent)

        halves = [payloads[0::2], payloads[1::2]]
        results = await asyncio.gather(
            paced(halves[0]), paced(halves[1]), _kill_and_restart(receiver, start, RECEIVER_KILLS, rng)
        )
        resent = await send_all(url, payloads[:RESENT], RESENT, retry_for=RUN_TIMEOUT)
        return [results[0], results[1], resent], results[2]

    receiver = [start()]
    try:
        sends, kills = asyncio.run(traffic())
    finally:
        receiver[0].stop()
    sent = _merge(sends)
    assert (sent.accepted, sent.errors) == (WEBHOOKS + RESENT, 0), sent.statuses
    uri = Catalog(served.catalog).uri
    names = dataset_names(HOOKS_PROJECT)
    wanted = {names[t]: ids for t, ids in expected_ids(payloads).items() if ids}

    def all_applied() -> bool:
        cat = Catalog(served.catalog)
        applied = applied_seq(cat, HOOKS_PROJECT) if inbox_name(HOOKS_PROJECT) in cat else 0
        runs = webhook_runs(server, uri)
        return applied >= WEBHOOKS and all(r.state_type is not None and r.state_type.value in TERMINAL for r in runs)

    wait_until(all_applied, RUN_TIMEOUT * 2, "the webhooks to be applied", served.process)
    runs = webhook_runs(server, uri)
    events = count_events(server.url, uri)
    cat = Catalog(served.catalog)
    inbox = cat.dataset(inbox_name(HOOKS_PROJECT))
    ranges = applied_ranges(cat, names["annotations"])
    covered = sorted(seq for first, last in ranges for seq in range(first, last + 1))
    result = audit(served.catalog, wanted, {name: WEBHOOKS for name in wanted})
    problems = abs(events - WEBHOOKS) + abs(inbox.count() - WEBHOOKS) + (covered != list(range(1, WEBHOOKS + 1)))
    record(
        "process",
        ProcessFault(
            scenario="webhook receiver SIGKILLed and restarted, webhooks in flight",
            trials=kills,
            changes=WEBHOOKS,
            rows=result.rows,
            rows_lost=result.rows_lost,
            rows_duplicated=result.rows_duplicated,
            applied_twice=result.applied_twice,
            problems=len(result.problems) + problems,
            detail=f"{WEBHOOKS} webhooks ({RESENT} sent twice) by a resending client; {sent.attempts} requests, "
            f"{events} events, {len(runs)} triggered runs, {len(ranges)} batch commits",
        ),
    )
    assert events == WEBHOOKS, f"{events} events for {WEBHOOKS} webhooks"
    assert inbox.count() == WEBHOOKS and applied_seq(cat, HOOKS_PROJECT) == WEBHOOKS
    assert covered == list(range(1, WEBHOOKS + 1)), ranges  # each webhook in exactly one applied batch
    assert 1 <= len(runs) <= WEBHOOKS and {r.state_type.value for r in runs} == {"COMPLETED"}, runs
    assert result.ok, result


def _merge(parts: list[Sent]) -> Sent:
    merged = Sent(sum(p.webhooks for p in parts), max(p.concurrency for p in parts))
    for part in parts:
        merged.accepted += part.accepted
        merged.errors += part.errors
        merged.attempts += part.attempts
        merged.statuses.update(part.statuses)
        merged.latencies += part.latencies
    return merged


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(SERVICE_TIMEOUT)
def test_the_webhook_receiver_under_load_emits_one_event_per_webhook(server: Prefect, tmp_path: Path) -> None:
    figures = run(server.url, server.env, tmp_path, free_port(), LOAD_WEBHOOKS, LOAD_CONCURRENCY)
    sent = figures.sent
    record(
        "webhook_load",
        WebhookLoad(
            webhooks=sent.webhooks,
            concurrency=sent.concurrency,
            accepted=sent.accepted,
            errors=sent.errors,
            events=figures.events,
            applied=figures.applied,
            apply_seconds=figures.apply_seconds,
            p50_ms=sent.percentile_ms(0.5),
            p99_ms=sent.percentile_ms(0.99),
            per_second=sent.per_second,
        ),
    )
    assert (sent.accepted, sent.errors) == (LOAD_WEBHOOKS, 0), sent.statuses
    assert len(sent.event_ids) == LOAD_WEBHOOKS and figures.events == LOAD_WEBHOOKS
    assert figures.applied == LOAD_WEBHOOKS


def test_a_repeated_webhook_is_one_event_and_commits_once(tmp_path: Path) -> None:
    """Regression: each delivery of a webhook became a new event and a new commit keyed by its flow run, so
    a resent webhook was applied again (and a late resend could undo a newer change)."""
    first, other = make_webhooks(2)
    assert webhook_event(first, "/c", "p").id == webhook_event(dict(reversed(first.items())), "/c", "p").id
    assert webhook_event(first, "/c", "p").id != webhook_event(other, "/c", "p").id
    assert webhook_event(first, "/c", "p").id != webhook_event(first, "/c", "q").id
    catalog = Catalog(str(tmp_path / "lake"))
    for run_id in ("run-1", "run-2"):  # two flow runs for the same webhook
        batch = webhook_batch(first, flow_run_id=run_id)
        assert batch.info.idempotency_key is not None
        commit_changes(catalog, "p", batch.changes, idempotency_key=batch.info.idempotency_key)
    annotations = catalog.dataset(dataset_names("p")["annotations"])
    assert annotations.snapshot().id == 1  # created empty, then one commit
    assert annotations.count() == len(expected_ids([first])["annotations"])
