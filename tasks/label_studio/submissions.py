"""Label Studio annotations, drafts and predictions ("submissions") as canonical region rows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.groundtruth import region_row_id

from ..json_node import Node
from ..provenance import Provenance
from .results import SourceResult, TextLookup, region_rows

# Drafts name their author only as "email, user id".
_DRAFT_AUTHOR = re.compile(r",\s*(\d+)\s*$")


@dataclass(frozen=True)
class Submission:
    """One labeling act: an annotation, a draft or a prediction, with its results."""

    submission_id: str
    node: Node
    status: str
    annotator: str | None
    annotator_email: str | None
    created_at: datetime | None
    updated_at: datetime | None
    lead_time_s: float | None
    results: list[SourceResult]
    model_version: str | None = None
    score: float | None = None


def read_annotation(node: Node, position: int) -> Submission:
    """An annotation object; `completed_by` is a user id (JSON export) or a user object (snapshot)."""
    _require_object(node, "an annotation object")
    annotator, email = _user(node.child("completed_by"))
    if node.child("was_cancelled").as_bool():
        status = "cancelled"
    elif node.child("ground_truth").as_bool():
        status = "ground_truth"
    else:
        status = "submitted"
    return Submission(
        submission_id=submission_id("annotation", node.child("id"), position),
        node=node,
        status=status,
        annotator=annotator,
        annotator_email=email,
        created_at=node.child("created_at").as_timestamp(),
        updated_at=node.child("updated_at").as_timestamp(),
        lead_time_s=node.child("lead_time").as_float(),
        results=results_of(node),
    )


def read_draft(node: Node, position: int) -> Submission:
    """A draft object (an unsubmitted annotation in progress)."""
    _require_object(node, "a draft object")
    author = _DRAFT_AUTHOR.search(node.child("created_username").as_str() or "")
    return Submission(
        submission_id=submission_id("draft", node.child("id"), position),
        node=node,
        status="draft",
        annotator=author.group(1) if author else None,
        annotator_email=node.child("user").as_str(),
        created_at=node.child("created_at").as_timestamp(),
        updated_at=node.child("updated_at").as_timestamp(),
        lead_time_s=node.child("lead_time").as_float(),
        results=results_of(node),
    )


def read_prediction(node: Node, position: int) -> Submission:
    """A prediction object (model output, as imported or from an ML backend)."""
    _require_object(node, "a prediction object")
    return Submission(
        submission_id=submission_id("prediction", node.child("id"), position),
        node=node,
        status="prediction",
        annotator=None,
        annotator_email=None,
        created_at=node.child("created_at").as_timestamp(),
        updated_at=node.child("updated_at").as_timestamp(),
        lead_time_s=None,
        results=results_of(node),
        model_version=_model_version(node.child("model_version")),
        score=node.child("score").as_float(),
    )


def results_of(node: Node) -> list[SourceResult]:
    """The `result` array of a submission object."""
    results = []
    for position, result in enumerate(node.child("result").items()):
        _require_object(result, "a result object")
        results.append(SourceResult(node=result, raw=result.value, position=position))
    return results


def submission_rows(
    submission: Submission, item: str, text_of: TextLookup, provenance: Provenance
) -> list[dict[str, Any]]:
    """One row per region of `submission`, or one `empty` row when it has none (cancelled, or empty)."""
    regions = region_rows(submission.results, text_of) or [_empty_region(submission)]
    common = {
        "item_id": item,
        "submission_id": submission.submission_id,
        "status": submission.status,
        "annotator": submission.annotator,
        "annotator_email": submission.annotator_email,
        "created_at": submission.created_at,
        "updated_at": submission.updated_at,
        "lead_time_s": submission.lead_time_s,
        "model_version": submission.model_version,
    }
    rows = []
    for region in regions:
        raw, pointer = region.pop("raw"), region.pop("source_pointer")
        rows.append(
            {
                **common,
                **region,
                "id": region_row_id(item, submission.submission_id, region["region_id"]),
                "score": submission.score if region.get("score") is None else region["score"],
                **provenance.columns(raw, pointer),
            }
        )
    return rows


def submission_id(kind: str, id_node: Node, position: int) -> str:
    """`<kind>:<source id>`; imported submissions may lack ids, then their position in the task stands in."""
    return f"{kind}:{id_node.as_id() or f'#{position}'}"


def _empty_region(submission: Submission) -> dict[str, Any]:
    return {
        "region_id": None,
        "kind": "empty",
        "result_positions": [],
        "raw": "[]",
        "source_pointer": submission.node.pointer,
    }


def _require_object(node: Node, what: str) -> None:
    if not isinstance(node.value, dict):
        raise node.expect(what)


def _user(node: Node) -> tuple[str | None, str | None]:
    if isinstance(node.value, dict):
        return node.child("id").as_id(), node.child("email").as_str()
    return node.as_id(), None


def _model_version(node: Node) -> str | None:
    # Label Studio stores model_version as free text; older versions wrote numbers.
    return (
        str(node.value) if isinstance(node.value, int | float) and not isinstance(node.value, bool) else node.as_str()
    )
