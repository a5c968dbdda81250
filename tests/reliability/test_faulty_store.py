"""The fault-injecting store does exactly what each fault promises (checked against the plain store)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from faulty_store import Fault, FaultPlan, InjectedFault, Op, Rule, record_calls

from storage import Catalog
from storage.io import LocalStore, ObjectStore


def wrapped(tmp_path: Path, *rules: Rule) -> tuple[ObjectStore, LocalStore, FaultPlan]:
    plain = LocalStore(str(tmp_path))
    plan = FaultPlan(list(rules))
    plan.armed = True
    return plan.wrap(plain).child("ds"), plain, plan


def test_error_fails_before_the_store_is_touched(tmp_path: Path) -> None:
    store, plain, _plan = wrapped(tmp_path, Rule(Fault.ERROR, op=Op.WRITE_BYTES))
    with pytest.raises(InjectedFault):
        store.write_bytes("a", b"x")
    assert not plain.exists("ds/a")
    store.write_bytes("a", b"x")  # times=1: the next call goes through
    assert plain.read_bytes("ds/a") == b"x"


def test_lost_response_takes_effect_then_raises(tmp_path: Path) -> None:
    store, plain, _plan = wrapped(tmp_path, Rule(Fault.LOST_RESPONSE, op=Op.PUT_IF_ABSENT))
    with pytest.raises(OSError):
        store.put_if_absent("log/1", b"x")
    assert plain.read_bytes("ds/log/1") == b"x"


def test_precondition_after_retry_creates_and_answers_false(tmp_path: Path) -> None:
    store, plain, _plan = wrapped(tmp_path, Rule(Fault.PRECONDITION_AFTER_RETRY))
    assert store.put_if_absent("log/1", b"x") is False
    assert plain.read_bytes("ds/log/1") == b"x"


def test_truncated_read_returns_a_prefix(tmp_path: Path) -> None:
    store, plain, _plan = wrapped(tmp_path, Rule(Fault.TRUNCATED_READ, path="ds/f"))
    plain.write_bytes("ds/f", b"0123456789")
    assert store.read_bytes("f") == b"01234"
    assert store.read_bytes("f") == b"0123456789"


def test_stale_list_misses_what_was_just_written(tmp_path: Path) -> None:
    store, plain, _plan = wrapped(tmp_path, Rule(Fault.STALE_LIST))
    plain.write_bytes("ds/old", b"x")
    store.write_bytes("new", b"y")
    assert [i.path for i in store.list_files()] == ["old"]
    assert sorted(i.path for i in store.list_files()) == ["new", "old"]


def test_latency_runs_the_action_first(tmp_path: Path) -> None:
    seen: list[str] = []
    store, _plain, _plan = wrapped(tmp_path, Rule(Fault.LATENCY, op=Op.EXISTS, action=lambda: seen.append("raced")))
    assert store.exists("nothing") is False
    assert seen == ["raced"]


def test_rules_select_by_path_pattern_and_occurrence(tmp_path: Path) -> None:
    store, plain, plan = wrapped(tmp_path, Rule(Fault.ERROR, op=Op.WRITE_BYTES, path="ds/data/*", nth=1))
    store.write_bytes("data/a", b"1")
    store.write_bytes("other/b", b"2")  # does not match the pattern, so it does not count
    with pytest.raises(InjectedFault):
        store.write_bytes("data/c", b"3")
    assert [c.path for c in plan.fired] == ["ds/data/c"]
    assert not plain.exists("ds/data/c")


def test_an_outage_fails_the_calls_after_a_lost_response(tmp_path: Path) -> None:
    store, plain, _plan = wrapped(tmp_path, Rule(Fault.LOST_RESPONSE, op=Op.WRITE_BYTES, outage=2))
    with pytest.raises(InjectedFault):
        store.write_bytes("a", b"1")
    for _ in range(2):
        with pytest.raises(InjectedFault):
            store.exists("a")
    assert store.exists("a") and plain.exists("ds/a")


def test_rules_refuse_faults_that_cannot_apply() -> None:
    with pytest.raises(ValueError, match="does not apply"):
        Rule(Fault.TRUNCATED_READ, op=Op.WRITE_BYTES)


def test_a_catalog_records_every_call_through_children(tmp_path: Path) -> None:
    plan = FaultPlan()
    cat = Catalog(tmp_path / "lake", wrap_store=plan.wrap)
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False)])
    calls = record_calls(lambda: cat.create_dataset("ds", schema, ["id"]).append({"id": [1]}), plan)
    assert any(c.op is Op.PUT_IF_ABSENT and c.path.startswith("ds/_log/") for c in calls)
    assert any(c.op is Op.WRITE_BYTES and c.path.startswith("ds/data/") for c in calls)
    assert Catalog(tmp_path / "lake").dataset("ds").count() == 1
