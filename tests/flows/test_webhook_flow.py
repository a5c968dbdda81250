"""apply-label-studio-webhooks on Prefect's test harness: webhook events sent to the API are collected and
applied in batches, with the content one-at-a-time application gives, each webhook exactly once, also
when a run dies between a batch's commit and its sync state."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _flowkit import FIXTURES
from prefect.client.orchestration import get_client

from bench.webhooks_load import applied_ranges, make_webhooks
from flows.label_studio import apply_label_studio_webhooks, ingest_label_studio_webhook
from storage import Catalog
from tasks.flow_tasks import prefect_tasks
from tasks.flow_tasks.events import deliver_webhook
from tasks.flow_tasks.webhook_inbox import applied_seq, inbox_name, pending

pytestmark = pytest.mark.usefixtures("harness")

RECORDED = [json.loads(line)["payload"] for line in (FIXTURES / "webhook_events.jsonl").read_text().splitlines()]
# What a webhook's rows are, whichever way they were committed (not provenance or commit times).
CONTENT = {
    "items": ["id", "source_id", "data"],
    "annotations": ["id", "item_id", "submission_id", "status", "labels", "box", "updated_at"],
    "predictions": ["id", "item_id", "submission_id", "labels"],
}


def send(payloads: list[dict[str, Any]], catalog: str, project: str) -> list[str]:
    """Hand the webhooks to the harness's API as `labelhouse webhooks` does; their event ids."""

    async def deliver() -> list[str]:
        async with get_client() as client:
            uri = Catalog(catalog).uri
            return [str((await deliver_webhook(p, uri, project, client=client)).id) for p in payloads]

    return asyncio.run(deliver())


def content(catalog: str, project: str) -> dict[str, list[dict[str, Any]]]:
    cat = Catalog(catalog)
    out = {}
    for table, columns in CONTENT.items():
        name = f"{project}__{table}"
        rows: pa.Table = cat.dataset(name).read_all(columns=columns) if name in cat else pa.table({})
        out[table] = sorted(rows.to_pylist(), key=lambda row: str(row["id"]))
    return out


def test_webhooks_applied_in_batches_equal_applied_one_by_one(tmp_path: Path) -> None:
    batched, single = str(tmp_path / "batched"), str(tmp_path / "single")
    ids = send(RECORDED, batched, "hook")
    result = apply_label_studio_webhooks(catalog=batched, project="hook", event_id=ids[-1])
    for payload in RECORDED:
        ingest_label_studio_webhook(payload, catalog=single, project="hook")
    assert content(batched, "hook") == content(single, "hook")
    # Annotation 5 is created, then deleted: two batches (see tests/tasks/test_webhook_inbox.py).
    assert [b.idempotency_key.split(":")[2] for b in result.batches] == ["1-7", "8-8"]
    assert (applied_seq(Catalog(batched), "hook"), pending(Catalog(batched), "hook")) == (8, 0)


def test_each_webhook_lands_once_across_reruns_resends_and_a_crash_before_the_sync_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = str(tmp_path / "lakehouse")
    payloads = make_webhooks(60)
    send(payloads[:40], catalog, "load")

    def lost(*args: Any, **kwargs: Any) -> None:
        raise OSError("injected: the worker died after the batch's commit, before its sync state")

    with monkeypatch.context() as patch:
        patch.setattr(prefect_tasks, "record_sync_state", lost)
        with pytest.raises(OSError, match="injected"):
            apply_label_studio_webhooks(catalog=catalog, project="load")
    assert applied_seq(Catalog(catalog), "load") == 0 and Catalog(catalog).dataset("load__annotations").count() > 0

    send(payloads[20:], catalog, "load")  # half of them a second time: the same events
    apply_label_studio_webhooks(catalog=catalog, project="load")
    again = apply_label_studio_webhooks(catalog=catalog, project="load")
    assert again.batches == []
    cat = Catalog(catalog)
    assert cat.dataset(inbox_name("load")).count() == 60 and applied_seq(cat, "load") == 60
    submissions = Counter(
        cat.dataset("load__annotations").read_all(columns=["submission_id"])["submission_id"].to_pylist()
    )
    assert len(submissions) == 60 and len(set(submissions.values())) == 1  # every webhook's regions, once
    ranges = applied_ranges(cat, "load__annotations")  # the crashed run's batch too: its rerun found the commit
    assert sorted(seq for first, last in ranges for seq in range(first, last + 1)) == list(range(1, 61)), ranges
