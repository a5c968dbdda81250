"""The Label Studio pull flow against a real Label Studio: changes since the committed watermark, once."""

from __future__ import annotations

from typing import Any

import pytest
from _flowkit import CONFIG, LabelStudio

from flows.label_studio import ingest_label_studio_pull
from storage import Catalog
from tasks.label_studio.api import LabelStudioClient

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("harness")]


def box(label: str) -> dict[str, Any]:
    return {
        "id": "r1",
        "from_name": "bbox",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 640,
        "original_height": 480,
        "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": [label]},
    }


def test_pulls_commit_changes_once_and_drop_deleted_tasks(
    label_studio: LabelStudio, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LS_TOKEN_FOR_TEST", label_studio.token)
    catalog = str(tmp_path / "lakehouse")

    def pull() -> Any:
        return ingest_label_studio_pull(
            label_studio.base_url,
            project["id"],
            catalog=catalog,
            project="pulled",
            token_env="LS_TOKEN_FOR_TEST",
            config=str(CONFIG),
        )

    with LabelStudioClient(label_studio.base_url, label_studio.token) as ls:
        project = ls.create_project("pull", CONFIG.read_text())
        first, second = ls.import_tasks(
            project["id"], [{"data": {"image": f"https://example.com/{i}.jpg", "caption": ""}} for i in (1, 2)]
        )
        annotation = ls.create_annotation(first, [box("car")])
        pull()
        cat = Catalog(catalog)
        assert cat.dataset("pulled__items").count() == 2
        assert cat.dataset("pulled__annotations").read_all(columns=["labels"])["labels"].to_pylist() == [["car"]]

        versions = cat.dataset("pulled__annotations").versions().num_rows
        nothing = pull()  # nothing changed since the watermark
        assert cat.dataset("pulled__annotations").versions().num_rows == versions
        assert not any(t["snapshot_id"] for t in nothing.record()["datasets"] if t["table"] == "annotations")

        ls.update_annotation(annotation["id"], result=[box("cyclist")])
        ls.delete_task(second)
        pull()
    assert cat.dataset("pulled__annotations").read_all(columns=["labels"])["labels"].to_pylist() == [["cyclist"]]
    assert cat.dataset("pulled__items").read_all(columns=["source_id"])["source_id"].to_pylist() == [str(first)]
    assert cat.dataset("pulled__sync").count() == 1
