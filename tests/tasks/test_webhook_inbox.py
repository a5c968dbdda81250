"""The webhook inbox: each event collected once, in order, also by racing collectors; batches that depend
only on where they start, so a rerun after a crash computes the same batch under the same key."""

from __future__ import annotations

import copy
import json
import multiprocessing
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.webhooks_load import make_webhooks
from storage import Catalog
from tasks.errors import SourceError
from tasks.flow_tasks.events import WebhookEvent, webhook_event
from tasks.flow_tasks.webhook_inbox import (
    LOOKBACK,
    applied_seq,
    collect,
    collect_since,
    holds,
    inbox,
    next_batch,
    pending,
)

FIXTURE_EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "label-studio" / "webhook_events.jsonl"
START = datetime(2026, 12, 5, 12, tzinfo=UTC)


def as_events(payloads: list[dict[str, Any]], start: datetime = START) -> list[WebhookEvent]:
    """The webhooks as Prefect holds them, one second apart."""
    return [
        WebhookEvent(str(webhook_event(p, "/lake", "p").id), start + timedelta(seconds=i), p)
        for i, p in enumerate(payloads)
    ]


def test_collect_adds_each_event_once_in_the_order_they_occurred(tmp_path: Path) -> None:
    cat = Catalog(str(tmp_path / "lake"))
    events = as_events(make_webhooks(10))
    assert collect_since(cat, "p", timedelta(days=7)) < datetime.now(UTC) - timedelta(days=6)
    assert collect(cat, "p", list(reversed(events[:6]))) == 6
    assert collect(cat, "p", events) == 4  # the first six again, and four new
    assert collect(cat, "p", events) == 0
    rows = inbox(cat, "p").read_all().sort_by("seq")
    assert rows["seq"].to_pylist() == list(range(1, 11))
    assert rows["event_id"].to_pylist() == [e.id for e in events]
    assert rows["collect_end"].to_pylist() == [6] * 6 + [10] * 4
    assert [json.loads(p) for p in rows["payload"].to_pylist()] == [e.payload for e in events]
    assert (pending(cat, "p"), applied_seq(cat, "p")) == (10, 0)
    assert holds(cat, "p", events[3].id) and not holds(cat, "p", "no-such-event")
    assert collect_since(cat, "p", timedelta(days=7)) == events[-1].occurred - LOOKBACK


def test_batches_end_at_their_collect_commit_and_at_the_limit(tmp_path: Path) -> None:
    cat = Catalog(str(tmp_path / "lake"))
    events = as_events(make_webhooks(10))
    collect(cat, "p", events[:6])
    collect(cat, "p", events[6:])
    first = next_batch(cat, "p", after=0)
    assert first is not None and (first.first, first.last) == (1, 6)
    assert first.parsed is not None and len(set(first.parsed.changes.annotations["submission_id"].to_pylist())) == 6
    assert first.parsed.info.sync_state is not None and json.loads(first.parsed.info.sync_state.value) == {"seq": 6}
    again = next_batch(cat, "p", after=0)
    assert again is not None and again.parsed is not None
    assert again.parsed.info.idempotency_key == first.parsed.info.idempotency_key
    second = next_batch(cat, "p", after=6)
    assert second is not None and (second.first, second.last) == (7, 10)
    assert second.parsed is not None and second.parsed.info.idempotency_key != first.parsed.info.idempotency_key
    small = next_batch(cat, "p", after=0, limit=4)
    assert small is not None and (small.first, small.last) == (1, 4)
    assert next_batch(cat, "p", after=10) is None
    assert next_batch(cat, "other", after=0) is None


def test_a_delete_after_an_upsert_of_the_same_annotation_starts_a_new_batch(tmp_path: Path) -> None:
    """The recorded session ends with annotation 5 created, then deleted: the delete cannot be folded into
    the batch that upserts it (which version it removes depends on the dataset)."""
    cat = Catalog(str(tmp_path / "lake"))
    payloads = [json.loads(line)["payload"] for line in FIXTURE_EVENTS.read_text().splitlines()]
    collect(cat, "p", as_events(payloads))
    first = next_batch(cat, "p", after=0)
    assert first is not None and (first.first, first.last) == (1, 7)
    last = next_batch(cat, "p", after=7)
    assert last is not None and (last.first, last.last) == (8, 8)
    assert last.parsed is not None and last.parsed.changes.replaced_submissions == ("annotation:5",)


def test_an_unmappable_webhook_is_a_batch_of_its_own_with_the_reason(tmp_path: Path) -> None:
    cat = Catalog(str(tmp_path / "lake"))
    payloads = make_webhooks(3)
    broken = copy.deepcopy(payloads[1])
    broken["annotation"]["result"] = "not a list"
    collect(cat, "p", as_events([payloads[0], broken, payloads[2]]))
    batches = [next_batch(cat, "p", after=n) for n in range(3)]
    assert [(b.first, b.last) for b in batches if b is not None] == [(1, 1), (2, 2), (3, 3)]
    assert batches[1] is not None and batches[1].parsed is None
    assert batches[1].problem is not None and "/annotation/result" in batches[1].problem


def test_a_gap_in_the_inbox_names_the_sync_state_to_record(tmp_path: Path) -> None:
    cat = Catalog(str(tmp_path / "lake"))
    collect(cat, "p", as_events(make_webhooks(3)))
    inbox(cat, "p").delete(keys=[1])
    with pytest.raises(SourceError, match=r'no webhook 1 \(next is 2\).*\{"seq": 1\}'):
        next_batch(cat, "p", after=0)


def _collect_in_process(catalog: str, events: list[tuple[str, str, dict[str, Any]]], seed: int) -> None:
    chosen = random.Random(seed).sample(events, k=len(events) * 3 // 4)
    for start in range(0, len(chosen), 5):
        collect(
            Catalog(catalog),
            "p",
            [WebhookEvent(i, datetime.fromisoformat(t), p) for i, t, p in chosen[start : start + 5]],
        )


def test_racing_collector_processes_collect_every_event_once(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lake")
    events = as_events(make_webhooks(40))
    plain = [(e.id, e.occurred.isoformat(), e.payload) for e in events]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_collect_in_process, args=(catalog, plain, seed)) for seed in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    collect(Catalog(catalog), "p", events)  # whatever every worker skipped
    rows = inbox(Catalog(catalog), "p").read_all().sort_by("seq")
    assert rows["seq"].to_pylist() == list(range(1, 41))
    assert sorted(rows["event_id"].to_pylist()) == sorted(e.id for e in events)
