"""Every bug the reliability suite found (all fixed), as its minimal reproduction."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fault_matrix import SCHEMA, VIEW_SCHEMA, rows, table, view_fn
from faulty_store import Fault, FaultPlan, Op, Rule

import tasks.webdataset.shard as shard_module
from flows.webhooks import PATH, SECRET_HEADER, create_app
from storage import Catalog, CorruptDatasetError, Dataset, InvalidNameError, StorageError, WriteOptions
from storage.naming import check_name
from tasks.coco.parse import parse_coco
from tasks.embeddings import decode_png
from tasks.errors import SourceFormatError
from tasks.flow_tasks.label_studio import webhook_batch
from tasks.label_studio.export import parse_export
from tasks.label_studio.webhooks import map_webhook
from tasks.labelbox.stream import iter_export, read_export_file


def setup(tmp_path: Path, views: bool = False) -> str:
    """A catalog with dataset `ds` (ids 0..5 in two files), and optionally view `mv` and index `idx`."""
    root = str(tmp_path / "lake")
    cat = Catalog(root)
    ds = cat.create_dataset("ds", SCHEMA, ["id"], ["blob"])
    ds.append(table(rows(range(3))))
    ds.append(table(rows(range(3, 6))))
    if views:
        cat.materialize("mv", ds.map_batches(view_fn, output_schema=VIEW_SCHEMA))
        cat.create_vector_index("idx", source=ds, column="vec", metric="l2sq")
        ds.append(table(rows([6])))  # so that refreshes have work to do
    return root


def faulty(root: str, *rules: Rule) -> tuple[Catalog, FaultPlan]:
    plan = FaultPlan(list(rules))
    return Catalog(root, wrap_store=plan.wrap), plan


def reread(root: str) -> Dataset:
    """`ds` through a catalog that shares no cache with the writer, after validate()."""
    ds = Catalog(root, wrap_store=FaultPlan().wrap).dataset("ds")
    ds.validate()
    return ds


def ids(ds: Dataset) -> list[int]:
    return sorted(ds.read_all(columns=["id"]).column("id").to_pylist())


# ----- fixed ---------------------------------------------------------------------------------------------


def test_a_commit_told_exists_by_its_own_retried_put_keeps_its_snapshot(tmp_path: Path) -> None:
    """BUG (fixed in storage/io put_once, used by Log.try_append): S3's SDK retries a conditional put
    whose response was lost; the retry gets 412, the engine took it for a lost race, deleted the manifest
    of the snapshot that had landed, and (idempotency key found) returned it: the head was unreadable."""
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.PRECONDITION_AFTER_RETRY, op=Op.PUT_IF_ABSENT, path="ds/_log/*"))
    ds = cat.dataset("ds")
    with plan.active():
        snap = ds.append(table(rows([10])), idempotency_key="k")
    assert plan.fired
    stored = reread(root)
    assert snap.id == stored.snapshot().id == 3
    assert ids(stored) == [0, 1, 2, 3, 4, 5, 10]


@pytest.mark.parametrize("outage", [1, 2, 3])
def test_a_lost_commit_response_whose_recheck_fails_keeps_the_commits_files(tmp_path: Path, outage: int) -> None:
    """BUG (fixed in storage/txn.py commit()): the log put landed, its response was lost, and reading the
    log back failed too; commit() then deleted the data file and change log of the snapshot that landed.
    Now the append either finds its snapshot or raises, and the snapshot stays whole either way."""
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.LOST_RESPONSE, op=Op.PUT_IF_ABSENT, path="ds/_log/*", outage=outage))
    ds = cat.dataset("ds")
    with plan.active(), contextlib.suppress(OSError):
        ds.append(table(rows([10])), idempotency_key="k")
    assert ids(reread(root)) == [0, 1, 2, 3, 4, 5, 10]
    assert ds.append(table(rows([10])), idempotency_key="k").id == 3  # the retry finds it, once
    assert ids(reread(root)) == [0, 1, 2, 3, 4, 5, 10]


def test_compact_and_delete_branch_work_on_a_freshly_opened_dataset(tmp_path: Path) -> None:
    """BUG (fixed in storage/dataset.py): compact(), delete_branch() and history() read the branch head
    without reading the log first, so on a new handle they raised VersionNotFoundError ("no branch")."""
    root = setup(tmp_path)
    Catalog(root).dataset("ds").create_branch("dev")
    assert Catalog(root).dataset("ds").compact(target_rows=100).operation == "compact"
    Catalog(root).dataset("ds").delete_branch("dev")
    assert len(Catalog(root).dataset("ds").history(1)) == 1
    assert ids(reread(root)) == [0, 1, 2, 3, 4, 5]


def test_create_branch_told_exists_by_its_own_retried_put_succeeds(tmp_path: Path) -> None:
    """BUG (fixed by put_once in Log.try_append): the branch was created, but the 412 of the SDK's retry
    made create_branch() loop and raise BranchExistsError for its own branch."""
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.PRECONDITION_AFTER_RETRY, op=Op.PUT_IF_ABSENT, path="ds/_log/*"))
    with plan.active():
        dev = cat.dataset("ds").create_branch("dev")
    assert ids(dev) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("fault", [Fault.LOST_RESPONSE, Fault.PRECONDITION_AFTER_RETRY])
def test_a_refresh_whose_lock_put_answer_was_lost_holds_the_lock(tmp_path: Path, fault: Fault) -> None:
    """BUG (fixed by put_once in RefreshLease): the lock was created but the answer lost, so the refresh
    failed with RefreshInProgressError, and so did every refresh on this host for the lease's hour."""
    root = setup(tmp_path, views=True)
    cat, plan = faulty(root, Rule(fault, op=Op.PUT_IF_ABSENT, path="mv/_refresh.lock"))
    mv = cat.materialized_view("mv")
    with plan.active():
        assert mv.refresh().changed
    assert plan.fired
    assert sorted(Catalog(root).materialized_view("mv").read_all().column("id").to_pylist()) == list(range(7))


def test_a_refresh_whose_lock_release_failed_can_be_retried(tmp_path: Path) -> None:
    """BUG (fixed in storage/views/lease.py): a failed delete of the lock left it naming this live process,
    so the retry raised RefreshInProgressError for the lease's hour (views and vector indexes)."""
    root = setup(tmp_path, views=True)
    cat, plan = faulty(root, Rule(Fault.ERROR, op=Op.DELETE, path="idx/_refresh.lock"))
    idx = cat.vector_index("idx")
    with plan.active(), pytest.raises(OSError):
        idx.refresh()
    assert not idx.refresh().changed  # the first refresh had committed; the retry takes the stale lock
    assert idx.reflects() == Catalog(root).dataset("ds").snapshot().id


def test_a_truncated_index_key_table_raises_a_storage_error(tmp_path: Path) -> None:
    """BUG (fixed in storage/vector_index.py): a damaged key table (or index file) surfaced as a raw
    pyarrow ArrowInvalid (usearch RuntimeError), outside the StorageError tree callers handle."""
    root = setup(tmp_path, views=True)
    cat, plan = faulty(root, Rule(Fault.TRUNCATED_READ, op=Op.READ_BYTES, path="idx/files/*.keys.parquet"))
    idx = cat.vector_index("idx")
    with plan.active(), pytest.raises(CorruptDatasetError):
        idx.refresh()
    assert idx.refresh().changed


# ----- fixed: hostile input (found by test_fuzz_parsers.py and test_hostile_inputs.py) ------------------


def test_a_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    """BUG (fixed in storage/naming.py): the name pattern ended in `$`, which also matches before a
    trailing newline, so `ds\\n` passed check_name and became a directory `ds\\n` in the catalog."""
    with pytest.raises(InvalidNameError):
        check_name("ds\n")
    with pytest.raises(InvalidNameError):
        Catalog(str(tmp_path / "lake")).create_dataset("ds\n", SCHEMA, ["id"])
    assert not (tmp_path / "lake" / "ds\n").exists()


@pytest.mark.parametrize("project", ["a string", [], 3])
def test_a_webhook_whose_project_is_not_an_object_is_a_source_error(project: object) -> None:
    """BUG (fixed in tasks/flow_tasks/label_studio.py webhook_batch): `payload.get("project", {}).get(...)`
    raised AttributeError for a project that is not an object, outside the documented error tree."""
    payload = {"action": "ANNOTATION_CREATED", "project": project, "task": None}
    with pytest.raises(SourceFormatError, match="task object"):
        webhook_batch(payload, flow_run_id=None)


def test_an_ndjson_line_nested_100000_levels_is_a_reject_not_a_recursion_error() -> None:
    """BUG (fixed in tasks/labelbox/stream.py): json.loads raised RecursionError, which escaped iter_export
    and ended the whole ingest; now the line is a reject naming its line number."""
    ok = b'{"data_row": {"id": "ok"}}'
    [chunk] = iter_export([ok, b"[" * 100_000 + b"]" * 100_000])
    assert chunk.changes.items.num_rows == 1
    assert [r.source_pointer for r in chunk.rejects] == ["/1"] and "line 2" in chunk.rejects[0].reason


@pytest.mark.parametrize("depth", [300, 900])
def test_json_that_parses_but_nests_too_deep_to_serialize_is_a_source_error(depth: int) -> None:
    """BUG (fixed in tasks/json_source.py MAX_DEPTH): a document nested just under the parser's recursion
    limit parsed, then json.dumps (the content hash, the `raw` columns) raised RecursionError."""
    doc = [{"id": 1, "data": {"x": "[" * depth + "]" * depth}}]
    text = json.dumps(doc).replace('"[', "[").replace(']"', "]")
    with pytest.raises(SourceFormatError, match="nested"):
        parse_export(text)
    with pytest.raises(SourceFormatError, match="nested"):
        parse_coco(f'{{"images": [{{"id": 1, "x": {"[" * depth + "]" * depth}}}]}}')


def test_an_escaped_lone_surrogate_is_a_source_error() -> None:
    """BUG (fixed in tasks/json_source.py, labelbox/stream.py, label_studio/webhooks.py): `"\\ud800"` is
    valid JSON but half a character; it raised UnicodeEncodeError from the content hash (exports, COCO) or
    from building the Arrow table (an NDJSON chunk, a webhook's rows)."""
    with pytest.raises(SourceFormatError, match="surrogate"):
        parse_export('[{"id": 1, "data": {"text": "a\\ud800"}}]')
    [chunk] = iter_export([b'{"data_row": {"id": "a\\ud800"}}', b'{"data_row": {"id": "ok"}}'])
    assert chunk.changes.items["source_id"].to_pylist() == ["ok"] and "surrogate" in chunk.rejects[0].reason
    with pytest.raises(SourceFormatError, match="surrogate"):
        map_webhook({"action": "TASKS_CREATED", "tasks": [{"id": 1, "data": {"text": "\ud800"}}]})


def test_the_webhook_receiver_answers_a_deeply_nested_body_with_400() -> None:
    """BUG (fixed in flows/webhooks.py _parse): json.loads raised RecursionError, answered 500."""
    emitted: list[object] = []
    app = create_app(secret="s", catalog="/nowhere", project="p", emit=lambda *a: emitted.append(a))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            PATH, content=b"[" * 100_000, headers={SECRET_HEADER: "s", "content-type": "application/json"}
        )
    assert response.status_code == 400 and not emitted


def test_an_overlong_ndjson_line_is_refused_without_reading_it(tmp_path: Path) -> None:
    """BUG (fixed in tasks/labelbox/stream.py): lines had no size limit, so one 2 GB line was read into
    memory whole (and then parsed). Now a line over max_line_bytes is a reject naming its line number."""
    path = tmp_path / "export.ndjson"
    path.write_bytes(b'{"data_row": {"id": "a"}}\n{"data_row": {"id": "' + b"x" * 5000 + b'"}}\n')
    [chunk] = read_export_file(path, max_line_bytes=1000)
    assert chunk.changes.items["source_id"].to_pylist() == ["a"]
    assert "line 2" in chunk.rejects[0].reason and "5025 bytes, over the limit of 1000" in chunk.rejects[0].reason


def test_a_png_that_inflates_past_its_header_is_refused_before_it_is_inflated() -> None:
    """BUG (fixed in tasks/embeddings.py decode_png): the whole IDAT stream was inflated before its size
    was compared with the header's, so a small PNG could inflate to gigabytes."""
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)
    head = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", bomb) + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match="more than 2"):
        decode_png(png)
    with pytest.raises(ValueError, match="over the limit"):
        decode_png(png.replace(head, struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)))


def test_a_shard_member_over_the_size_limit_is_a_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BUG (fixed in tasks/webdataset/shard.py): every member was read whole, so a .tar.gz member
    inflating to many GB was held in memory; now a member over MAX_MEMBER_BYTES is rejected unread."""
    monkeypatch.setattr(shard_module, "MAX_MEMBER_BYTES", 1000)
    path = tmp_path / "s-000000.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("a.txt", b"ok"), ("b.bin", bytes(5000))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    parsed = shard_module.parse_shard(path)
    assert parsed.items["source_id"].to_pylist() == ["a"]
    assert "'b.bin' is 5000 bytes, over the limit" in parsed.rejects[0].reason


# ----- open ----------------------------------------------------------------------------------------------


def test_create_dataset_can_be_retried_after_a_failure(tmp_path: Path) -> None:
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.ERROR, op=Op.WRITE_BYTES, path="new/manifests/*"))
    with plan.active(), pytest.raises((StorageError, OSError)):
        cat.create_dataset("new", SCHEMA, ["id"])
    cat.create_dataset("new", SCHEMA, ["id"]).append(table(rows([1])))
    assert Catalog(root).dataset("new").count() == 1


def test_materialize_can_be_retried_after_a_failure(tmp_path: Path) -> None:
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.ERROR, op=Op.PUT_IF_ABSENT, path="mv2/_view.json"))
    view = cat.dataset("ds").map_batches(view_fn, output_schema=VIEW_SCHEMA)
    with plan.active(), pytest.raises(OSError):
        cat.materialize("mv2", view)
    mv = cat.materialize("mv2", view)
    assert sorted(mv.read_all().column("id").to_pylist()) == list(range(6))


# ----- row images ------------------------------------------------------------------------------------------


def test_diff_of_a_dataset_logging_row_images_with_a_non_nullable_key(tmp_path: Path) -> None:
    """BUG (fixed in storage/changeset.py pool_type): with WriteOptions.log_row_images, a change without an
    image (an insert's pre-image) is a null struct, whose non-nullable `id` child then holds a null: every
    diff() raised ArrowInvalid ("nulls in input cannot be viewed as non-nullable")."""
    cat = Catalog(str(tmp_path / "lake"))
    ds = cat.create_dataset("ds", SCHEMA, ["id"], ["blob"], options=WriteOptions(log_row_images=True))
    ds.append(table(rows(range(3))))
    ds.upsert(table([*rows([1], tag=1), *rows([3])]))
    ds.delete(keys=[0])
    diff = ds.diff(1, columns=["id", "score", "blob"]).to_pylist()
    assert sorted((r["_change_type"], r["id"], r["score"], r["blob"]) for r in diff) == [
        ("delete", 0, 0, b"blob-0-0"),
        ("insert", 3, 30, b"blob-3-0"),
        ("update_postimage", 1, 11, b"blob-1-1"),
        ("update_preimage", 1, 10, b"blob-1-0"),
    ]


@pytest.mark.parametrize("as_list", [True, False])
def test_a_webhook_payload_nested_thousands_of_levels_at_its_root_is_a_format_error(as_list: bool) -> None:
    # Found by test_webhook_payloads_fuzzed (a 950-level list, under pytest and Hypothesis's own frames): the
    # error message rendered the whole wrong value with the JSON encoder, which recursed past Python's limit
    # (RecursionError, a crash).
    payload: object = {"action": "TASKS_CREATED"}
    for _ in range(5_000):
        payload = [payload] if as_list else {"value": payload}
    with pytest.raises(SourceFormatError, match="webhook payload"):
        map_webhook(payload)
    with pytest.raises(SourceFormatError, match="webhook payload"):
        webhook_batch(payload, flow_run_id=None)
