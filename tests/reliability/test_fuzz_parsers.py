"""Fuzz every parser with structural mutations of the real fixtures (Hypothesis).

Property: a parser returns rows (rejecting bad ones with a reason) or raises an error of the documented
tree (StorageError: SourceError, LabelingConfigError...); nothing else. Run through the commit path,
each dataset either gets exactly the good rows or stays untouched, and passes `validate()`; nothing is
written outside the catalog root. The webhook receiver answers every request below 500 and emits only
what it accepts.

`make test` runs a few hundred inputs per parser; `tests/reliability/run.py` sets LABELHOUSE_FUZZ_EXAMPLES
for more.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hostile import FIXTURES, Tally, dump, mutated, read_json, tallied
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.webhooks import PATH, SECRET_HEADER, create_app
from storage import Catalog, StorageError
from storage.groundtruth import dataset_names
from tasks.changes import ChangeSet
from tasks.coco.parse import parse_coco
from tasks.commit import TABLES, commit_changes
from tasks.flow_tasks.label_studio import webhook_batch
from tasks.label_studio.config import parse_labeling_config
from tasks.label_studio.export import parse_export
from tasks.label_studio.webhooks import map_webhook
from tasks.labelbox.stream import iter_export
from tasks.rejects import SourceReject
from tasks.webdataset import parse_shard

EXAMPLES = int(os.environ.get("LABELHOUSE_FUZZ_EXAMPLES", "200"))
COMMIT_EXAMPLES = max(10, EXAMPLES // 20)  # each commit example builds a catalog: ~20x the cost
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints its reproduction blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
COMMIT_FUZZ = settings(FUZZ, max_examples=COMMIT_EXAMPLES)
# About a second per input (they take a third of that on two cores shared with other work): the run's
# size sets the limit, not pyproject's 600 s default, which cut the full run's fuzzing short.
pytestmark = pytest.mark.timeout(max(600, EXAMPLES))

LS = ("label-studio",)


def _json_or_none(line: bytes) -> Any:
    """A fixture line's JSON (the Labelbox fixture holds deliberately broken lines too)."""
    try:
        return json.loads(line)
    except ValueError:
        return None


CONFIG_XML = FIXTURES.joinpath(*LS, "label_studio_config.xml").read_text(encoding="utf-8")
CONFIG = parse_labeling_config(CONFIG_XML)
EXPORTS = [
    read_json(*LS, f) for f in ("export_json.json", "export_snapshot.json", "export_ner.json", "edge_cases.json")
]
JSON_MIN = read_json(*LS, "export_json_min.json")
WEBHOOKS = [
    json.loads(line)["payload"]
    for line in FIXTURES.joinpath(*LS, "webhook_events.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
LABELBOX = [
    _line
    for _line in map(_json_or_none, FIXTURES.joinpath("labelbox", "export_v2.ndjson").read_bytes().splitlines())
    if _line
]
COCO = read_json("coco", "coco_instances.json")
SHARD = FIXTURES.joinpath("webdataset", "webdataset-000000.tar").read_bytes()


def rejected_rows(tally: Tally, rejects: list[SourceReject]) -> None:
    """Count rejects, each of which must say where and why."""
    for reject in rejects:
        assert reject.reason.strip() and reject.source_ref, reject
    tally.rejected += len(rejects)


# ----- parsers alone ----------------------------------------------------------------------------------------


def test_label_studio_exports_fuzzed() -> None:
    with tallied("label-studio export (JSON, snapshot)") as tally:

        @FUZZ
        @given(doc=st.sampled_from(EXPORTS).flatmap(mutated), with_config=st.booleans())
        def check(doc: Any, with_config: bool) -> None:
            tally.run(lambda: parse_export(dump(doc), config=CONFIG if with_config else None))

        check()


def test_label_studio_json_min_fuzzed() -> None:
    with tallied("label-studio export (JSON_MIN)") as tally:

        @FUZZ
        @given(doc=mutated(JSON_MIN))
        def check(doc: Any) -> None:
            tally.run(lambda: parse_export(dump(doc), config=CONFIG))

        check()


def test_label_studio_raw_bytes_fuzzed() -> None:
    """Cut, spliced and random bytes: truncation, bad UTF-8, BOMs, garbage."""
    text = dump(EXPORTS[0])
    with tallied("label-studio export (bytes)") as tally:

        @FUZZ
        @given(
            cut=st.integers(0, len(text)),
            junk=st.binary(max_size=16) | st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"\xc3"]),
            at=st.integers(0, len(text)),
        )
        def check(cut: int, junk: bytes, at: int) -> None:
            data = text[:at] + junk + text[at:cut] if at <= cut else text[:cut] + junk
            tally.run(lambda: parse_export(data, config=CONFIG))

        check()


def test_labeling_configs_fuzzed() -> None:
    pieces = st.sampled_from(
        ["<", ">", "</View>", "<View>", '="$', "&lt;", "&bogus;", "<!--", "<![CDATA[", "\x00", '"', "toName=", "name="]
    )
    with tallied("labeling config XML") as tally:

        @FUZZ
        @given(at=st.integers(0, len(CONFIG_XML)), cut=st.integers(0, 40), piece=pieces | st.text(max_size=8))
        def check(at: int, cut: int, piece: str) -> None:
            tally.run(lambda: parse_labeling_config(CONFIG_XML[:at] + piece + CONFIG_XML[at + cut :]))

        check()


def test_webhook_payloads_fuzzed() -> None:
    with tallied("webhook payload (mapping)") as tally:

        @FUZZ
        @given(payload=st.sampled_from(WEBHOOKS).flatmap(mutated))
        def check(payload: Any) -> None:
            tally.run(lambda: map_webhook(payload))
            tally.run(lambda: webhook_batch(payload, flow_run_id=None))

        check()


def test_labelbox_ndjson_fuzzed() -> None:
    with tallied("labelbox NDJSON") as tally:

        @FUZZ
        @given(
            lines=st.lists(st.sampled_from(LABELBOX).flatmap(mutated), min_size=1, max_size=4),
            raw=st.lists(
                st.binary(max_size=20) | st.sampled_from([b"", b"\n", b"{", b"\xff", b"[" * 5000]), max_size=2
            ),
        )
        def check(lines: list[Any], raw: list[bytes]) -> None:
            data = [dump(line) for line in lines] + raw
            chunks = tally.run(lambda: list(iter_export(data, chunk_lines=2)))
            for chunk in chunks or []:
                rejected_rows(tally, chunk.rejects)
                assert chunk.changes.items.num_rows + len(chunk.rejects) <= chunk.last_line - chunk.first_line + 1

        check()


def test_coco_fuzzed() -> None:
    with tallied("COCO instances") as tally:

        @FUZZ
        @given(doc=mutated(COCO))
        def check(doc: Any) -> None:
            parsed = tally.run(lambda: parse_coco(dump(doc)))
            if parsed is not None:
                rejected_rows(tally, parsed.rejects)

        check()


MEMBER_TYPES = [tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE,
                tarfile.DIRTYPE, tarfile.CONTTYPE, b"x"]  # fmt: skip
MEMBER_NAMES = st.one_of(
    st.sampled_from(["../../x.jpg", "/abs/x.jpg", "a/../../x.cls", "./x.jpg", "x", "__meta__", "a.b.c", ".jpg",
                     "000001.jpg", "000001.cls", "é/🚲.json", "a//b.txt", "a\\..\\b.txt", "x" * 300 + ".txt"]),
    st.text(max_size=20),
)  # fmt: skip


def hostile_tar(members: list[tuple[str, bytes, bytes, str]], fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.CONTTYPE) else 0
            try:
                archive.addfile(info, io.BytesIO(data) if info.size else None)
            except ValueError:  # a name this tar format cannot hold (too long, NUL): no shard can carry it
                continue
    return buffer.getvalue()


def test_webdataset_shards_fuzzed() -> None:
    """Members with hostile names and types, fixture shards with flipped header bytes, cut shards."""
    member = st.tuples(
        MEMBER_NAMES,
        st.sampled_from(MEMBER_TYPES),
        st.binary(max_size=32),
        st.sampled_from(["", "/etc/passwd", "../../x"]),
    )
    built = st.builds(
        hostile_tar,
        st.lists(member, max_size=6),
        st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]),
    )
    flipped = st.builds(
        lambda edits, cut: _edit(SHARD, edits)[:cut],
        st.lists(st.tuples(st.integers(0, len(SHARD) - 1), st.integers(0, 255)), max_size=8),
        st.integers(0, len(SHARD)),
    )
    with tallied("WebDataset tar shard") as tally, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard-000000.tar"

        @FUZZ
        @given(content=st.one_of(built, flipped))
        def check(content: bytes) -> None:
            path.write_bytes(content)
            parsed = tally.run(lambda: parse_shard(path))
            if parsed is not None:
                rejected_rows(tally, parsed.rejects)
                for key in parsed.items["source_id"].to_pylist():
                    assert not key.startswith("/") and ".." not in key.split("/"), key
            assert sorted(os.listdir(tmp)) == ["shard-000000.tar"]

        check()


def _edit(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position] = value
    return bytes(out)


# ----- the webhook receiver (ASGI app, in process) ---------------------------------------------------------


def test_webhook_receiver_fuzzed() -> None:
    emitted: list[dict[str, Any]] = []
    app = create_app(secret="s3cret", catalog="/nowhere", project="p", max_body_bytes=64_000,
                     emit=lambda payload, catalog, project: emitted.append(payload))  # fmt: skip
    bodies = st.one_of(
        st.sampled_from(WEBHOOKS).flatmap(mutated).map(dump),
        st.binary(max_size=64),
        st.sampled_from([b"", b"[" * 100_000, b'{"action": 1}', b"null", b"{" * 70_000]),
    )
    good = {SECRET_HEADER: "s3cret", "content-type": "application/json"}
    broken = st.fixed_dictionaries(
        {},
        optional={
            SECRET_HEADER: st.sampled_from(["s3cret", "wrong", ""]),
            "content-type": st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]),
        },
    )
    headers = st.one_of(st.just(good), st.just(good), broken)  # most requests get past the header checks
    with tallied("webhook receiver (HTTP)") as tally, TestClient(app, raise_server_exceptions=False) as client:

        @FUZZ
        @given(body=bodies, header=headers)
        def check(body: bytes, header: dict[str, str]) -> None:
            before = len(emitted)
            response = tally.run(lambda: client.post(PATH, content=body, headers=header))
            assert response is not None and response.status_code < 500, (response and response.text, body[:200])
            assert (len(emitted) > before) == (response.status_code == 202)
            if response.status_code >= 400:
                tally.rejected += 1
                assert response.json()["detail"]

        check()


# ----- through the commit path -----------------------------------------------------------------------------


def one_edit(doc: Any) -> st.SearchStrategy[Any]:
    """Inputs with a single edit: most still parse, so the commit path sees good and bad rows together."""
    return mutated(doc, max_edits=1)


def committed(change: ChangeSet, key: str, source_rejects: list[SourceReject], class_map: Any = None) -> None:
    """Commit into a fresh catalog; every dataset holds exactly the batch's good rows or nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(str(Path(tmp) / "lake"))
        outcome = None
        try:
            outcome = commit_changes(
                catalog, "p", change, idempotency_key=key, class_map=class_map, source_rejects=source_rejects
            )
        except StorageError as exc:
            assert str(exc)
        names = dataset_names("p")
        for table in TABLES:
            batch: pa.Table = getattr(change, table)
            if names[table] not in catalog.datasets():
                assert outcome is None
                continue
            stored = catalog.dataset(names[table]).read_all(columns=batch.column_names)  # blobs too
            ids = stored["id"].to_pylist()
            assert len(ids) == len(set(ids)) and set(ids) <= set(batch["id"].to_pylist())
            if outcome is not None:
                assert len(ids) == outcome.tables[table].good_rows
            expected = batch.filter(pa.compute.is_in(batch["id"], value_set=stored["id"])).sort_by("id")
            assert stored.sort_by("id").to_pylist() == expected.to_pylist() or _nan(expected)
        for name in catalog.datasets():
            catalog.dataset(name).validate()
        assert os.listdir(tmp) == ["lake"]


def _nan(table: pa.Table) -> bool:
    """NaN != NaN: rows holding one cannot be compared by value (the ids were)."""
    return "nan" in json.dumps(table.to_pylist(), default=str).lower()


def test_label_studio_exports_through_the_commit_path() -> None:
    with tallied("label-studio export, committed") as tally:

        @COMMIT_FUZZ
        @given(doc=st.sampled_from(EXPORTS).flatmap(one_edit))
        def check(doc: Any) -> None:
            parsed = tally.run(lambda: parse_export(dump(doc), config=CONFIG))
            if parsed is not None:
                committed(parsed.changes, parsed.idempotency_key, [], CONFIG.class_map)

        check()


def test_labelbox_and_coco_through_the_commit_path() -> None:
    with tallied("labelbox NDJSON + COCO, committed") as tally:

        @COMMIT_FUZZ
        @given(lines=st.lists(st.sampled_from(LABELBOX).flatmap(one_edit), min_size=1, max_size=3), coco=one_edit(COCO))
        def check(lines: list[Any], coco: Any) -> None:
            for chunk in tally.run(lambda: list(iter_export([dump(line) for line in lines]))) or []:
                rejected_rows(tally, chunk.rejects)
                committed(chunk.changes, chunk.idempotency_key, chunk.rejects)
            parsed = tally.run(lambda: parse_coco(dump(coco)))
            if parsed is not None:
                rejected_rows(tally, parsed.rejects)
                committed(parsed.changes, parsed.idempotency_key, parsed.rejects, parsed.class_map)

        check()


def test_webhooks_through_the_commit_path() -> None:
    with tallied("webhook payload, committed") as tally:

        @COMMIT_FUZZ
        @given(payload=st.sampled_from(WEBHOOKS).flatmap(one_edit))
        def check(payload: Any) -> None:
            batch = tally.run(lambda: webhook_batch(payload, flow_run_id=None))
            if batch is not None:
                committed(batch.changes, f"webhook:{hash(dump(payload))}", [], batch.info.class_map)

        check()
