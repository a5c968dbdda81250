"""The Label Studio webhook receiver under load: N webhooks at C concurrent connections from a local client.

    .venv/bin/python bench/webhooks_load.py [--webhooks 2000] [--concurrency 50]

Starts a Prefect server (infra/services.py) and `labelhouse webhooks` on 127.0.0.1, sends N distinct
ANNOTATION_CREATED webhooks with an httpx async client, and counts the events they became through the
Prefect API (each accepted webhook must be exactly one event). Then the webhook flow the `on-webhook`
deployment runs (apply-label-studio-webhooks) collects and applies them all, and runs again as a
redelivered trigger would: every webhook must be applied exactly once, its rows present once. Prints
p50/p99 latency, throughput, errors and how long applying took. The reliability suite runs the same
(tests/reliability/test_restarts.py).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
EVENTS_FILE = REPO / "tests" / "fixtures" / "label-studio" / "webhook_events.jsonl"
LABELHOUSE = str(Path(sys.executable).parent / "labelhouse")
SECRET = "bench-secret"
WEBHOOK_EVENT = "labelhouse.label_studio.webhook"
_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


def make_webhooks(n: int, first_task: int = 1000) -> list[dict[str, Any]]:
    """`n` distinct ANNOTATION_CREATED payloads: the recorded one, each for a task and annotation of its own."""
    template = next(
        p for p in (json.loads(line)["payload"] for line in EVENTS_FILE.read_text().splitlines())
        if p["action"] == "ANNOTATION_CREATED"
    )  # fmt: skip
    out = []
    for i in range(first_task, first_task + n):
        payload = copy.deepcopy(template)
        payload["task"]["id"] = payload["annotation"]["task"] = i
        payload["annotation"]["id"] = i
        payload["annotation"]["unique_id"] = f"bench-{i}"
        out.append(payload)
    return out


def expected_ids(payloads: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
    """The row ids each canonical table must hold once the payloads are applied (table -> ids)."""
    from tasks.flow_tasks.label_studio import webhook_batch

    ids: dict[str, set[str]] = {"items": set(), "annotations": set(), "predictions": set()}
    for payload in payloads:
        changes = webhook_batch(payload, flow_run_id=None).changes
        for table in ids:
            ids[table] |= set(getattr(changes, table)["id"].to_pylist())
    return ids


@dataclass
class Sent:
    """What the sender saw: per webhook, accepted or not; per successful request, its latency."""

    webhooks: int
    concurrency: int
    seconds: float = 0.0
    accepted: int = 0
    errors: int = 0  # webhooks never accepted (after retries, if the sender retried)
    attempts: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


async def send_all(
    url: str, payloads: Sequence[dict[str, Any]], concurrency: int, retry_for: float = 0.0, secret: str = SECRET
) -> Sent:
    """POST every payload, `concurrency` at a time. With `retry_for` > 0 the sender resends a webhook that
    met a connection error, a timeout or a 5xx until it is accepted or `retry_for` seconds have passed
    (at-least-once delivery); with 0 it sends once, as Label Studio does."""
    sent = Sent(len(payloads), concurrency)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    headers = {"Content-Type": "application/json", "X-Labelhouse-Secret": secret}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def deliver(client: httpx.AsyncClient, body: bytes) -> None:
        deadline = time.monotonic() + retry_for
        while True:
            sent.attempts += 1
            started = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                response, outcome = None, type(exc).__name__
            sent.statuses[outcome] += 1
            if response is not None and response.status_code < 300:
                sent.latencies.append(time.perf_counter() - started)
                sent.accepted += 1
                if event_id := response.json().get("event_id"):
                    sent.event_ids.add(event_id)
                return
            retryable = response is None or response.status_code in _RETRY_STATUSES
            if not retryable or time.monotonic() > deadline:
                sent.errors += 1
                return
            await asyncio.sleep(0.25)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            await deliver(client, json.dumps(queue.get_nowait()).encode())

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30.0, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    sent.seconds = time.perf_counter() - started
    return sent


def count_events(api_url: str, catalog_uri: str) -> int:
    """Webhook events the Prefect API holds for `catalog_uri` (events are stored once per id)."""
    body = {
        "filter": {
            "event": {"name": [WEBHOOK_EVENT]},
            "any_resource": {"labels": {"labelhouse.catalog": [catalog_uri]}},
        }
    }
    response = httpx.post(f"{api_url}/events/count-by/event", json=body, timeout=30.0, trust_env=False)
    response.raise_for_status()
    return sum(int(row["count"]) for row in response.json())


def wait_for_events(api_url: str, catalog_uri: str, wanted: int, timeout: float = 120.0) -> int:
    """Poll the event count until it reaches `wanted` (the server persists events in batches)."""
    deadline = time.monotonic() + timeout
    count = count_events(api_url, catalog_uri)
    while count < wanted and time.monotonic() < deadline:
        time.sleep(1.0)
        count = count_events(api_url, catalog_uri)
    return count


def apply_all_twice(api_url: str, catalog: str, project: str) -> float:
    """Run the webhook flow twice (the second as a repeated trigger finds nothing new); the first run's seconds."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.label_studio import apply_label_studio_webhooks

    with temporary_settings({PREFECT_API_URL: api_url}):
        started = time.perf_counter()
        apply_label_studio_webhooks(catalog=catalog, project=project)
        seconds = time.perf_counter() - started
        apply_label_studio_webhooks(catalog=catalog, project=project)
    return seconds


@contextmanager
def receiver(
    env: dict[str, str], catalog: str, project: str, port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`labelhouse webhooks` on 127.0.0.1:`port` until the block ends."""
    command = [LABELHOUSE, "webhooks", "--secret", SECRET, "--port", str(port), "--catalog", catalog]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*command, "--project", project], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_healthy(port, process, log)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the webhook receiver did not start; its log ends:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@dataclass(frozen=True)
class LoadFigures:
    sent: Sent
    events: int
    applied: int  # webhooks found applied exactly once, every row of them in place once
    apply_seconds: float


def run(api_url: str, env: dict[str, str], work: Path, port: int, webhooks: int, concurrency: int) -> LoadFigures:
    """Load the receiver of a fresh catalog (Prefect at `api_url`), count events, apply them all twice."""
    from storage import Catalog

    catalog, project = str(work / "lake"), "bench"
    payloads = make_webhooks(webhooks)
    with receiver(env, catalog, project, port, work / "receiver.log"):
        sent = asyncio.run(send_all(f"http://127.0.0.1:{port}/label-studio", payloads, concurrency))
    uri = Catalog(catalog).uri
    events = wait_for_events(api_url, uri, sent.accepted)
    seconds = apply_all_twice(api_url, catalog, project)
    return LoadFigures(sent, events, applied_once(catalog, project, payloads), seconds)


def applied_once(catalog: str, project: str, payloads: Sequence[dict[str, Any]]) -> int:
    """How many webhooks the annotations' batch commits cover exactly once (0 unless every row the payloads
    carry is present exactly once and nothing else)."""
    from storage import Catalog
    from storage.groundtruth import dataset_names

    cat, names = Catalog(catalog), dataset_names(project)
    for table, ids in expected_ids(payloads).items():
        held = Counter(cat.dataset(names[table]).read_all(columns=["id"])["id"].to_pylist()) if ids else Counter()
        if held.keys() != ids or any(n > 1 for n in held.values()):
            return 0
    covered = Counter(
        seq for first, last in applied_ranges(cat, names["annotations"]) for seq in range(first, last + 1)
    )
    return sum(covered[seq] == 1 for seq in range(1, len(payloads) + 1))


def applied_ranges(cat: Any, dataset: str) -> list[tuple[int, int]]:
    """The inbox seq ranges of a dataset's webhook batch commits, in commit order (keys
    `label-studio:webhooks:<first>-<last>:<digest>:<table>`); a range committed twice appears twice."""
    log = cat.dataset(dataset)._ctx.log
    log.refresh()
    keys = [e.idempotency_key for e in log.entries() if (e.idempotency_key or "").startswith("label-studio:webhooks:")]
    return [(int(a), int(b)) for a, b in (key.split(":")[2].split("-") for key in keys)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "webhooks_load.md")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("labelhouse_infra_services", REPO / "infra" / "services.py")
    assert spec is not None and spec.loader is not None
    services = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = services
    spec.loader.exec_module(services)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["LABELHOUSE_INFRA_STATE"] = str(work / "infra")
        os.environ["LABELHOUSE_PREFECT_HOME"] = str(work / "server-home")
        server = services.start("prefect-server", port=_free_port(), timeout=240)
        env = {
            **os.environ,
            "PREFECT_API_URL": server.url,
            "PREFECT_HOME": str(work / "client-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        try:
            os.environ.update(PREFECT_HOME=env["PREFECT_HOME"])
            figures = run(server.url, env, work, _free_port(), args.webhooks, args.concurrency)
        finally:
            services.stop("prefect-server")
    table = figures_table(figures)
    print(table)
    command = " ".join(["bench/webhooks_load.py", *(argv if argv is not None else sys.argv[1:])])
    args.out.write_text(f"# Webhook receiver under load\n\n`{command}` ({os.cpu_count()} CPUs)\n\n{table}\n")
    print(f"written to {args.out}")
    ok = figures.sent.errors == 0 and figures.events == figures.sent.accepted == figures.applied
    return 0 if ok else 1


def figures_table(figures: LoadFigures) -> str:
    """The figures as a markdown table."""
    sent = figures.sent
    columns = {
        "webhooks": sent.webhooks,
        "concurrency": sent.concurrency,
        "accepted": sent.accepted,
        "errors": sent.errors,
        "events": figures.events,
        "applied once": figures.applied,
        "apply s": f"{figures.apply_seconds:.0f}",
        "p50 ms": f"{sent.percentile_ms(0.5):.0f}",
        "p99 ms": f"{sent.percentile_ms(0.99):.0f}",
    }
    header, row = list(columns), list(columns.values())
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(sent.statuses.items()))
    return "\n".join([
        "| " + " | ".join([*header, "webhooks/s", "statuses"]) + " |",
        "|" + " --- |" * (len(header) + 2),
        "| " + " | ".join(str(c) for c in [*row, f"{sent.per_second:.1f}", statuses]) + " |",
    ])  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
