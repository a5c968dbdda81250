"""Resolving a `version` argument (snapshot id, tag, branch name, datetime) to a log entry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .context import DatasetContext
from .errors import InvalidNameError, VersionNotFoundError
from .log import LogEntry
from .naming import check_name

Version = int | str | datetime | None


def branch_head(ctx: DatasetContext, branch: str) -> LogEntry:
    """The head of a branch, or VersionNotFoundError naming the branches that exist."""
    head = ctx.log.branch_head(branch)
    if head is None:
        raise VersionNotFoundError(
            f"dataset {ctx.name!r} has no branch {branch!r}; branches: {sorted(ctx.log.branches())}"
        )
    return head


def resolve(ctx: DatasetContext, branch: str, version: Any) -> LogEntry:
    """The snapshot a version argument names; datetimes are looked up along `branch`'s history."""
    ctx.log.refresh()
    if version is None:
        return branch_head(ctx, branch)
    if isinstance(version, bool):
        raise VersionNotFoundError(f"version {version!r} is not a snapshot id, tag, branch or datetime")
    if isinstance(version, int):
        entry = ctx.log.get(version)
        if entry.is_branch_delete:
            raise VersionNotFoundError(f"snapshot {version} deleted branch {entry.branch!r}; it has no content")
        return entry
    if isinstance(version, datetime):
        return _at_time(ctx, branch, version)
    if isinstance(version, str):
        tagged = ctx.tags.get(version) if _tag_like(version) else None
        if tagged is not None:
            return ctx.log.get(tagged)
        head = ctx.log.branch_head(version)
        if head is not None:
            return head
        if version.isdigit():
            return resolve(ctx, branch, int(version))
        raise VersionNotFoundError(
            f"dataset {ctx.name!r} has no tag or branch {version!r}; tags: {sorted(ctx.tags.all())}, "
            f"branches: {sorted(ctx.log.branches())}"
        )
    raise VersionNotFoundError(
        f"version {version!r} of type {type(version).__name__} is not a snapshot id, tag, branch or datetime"
    )


def _tag_like(name: str) -> bool:
    try:
        check_name(name, "tag")
    except InvalidNameError:
        return False
    return True


def _at_time(ctx: DatasetContext, branch: str, when: datetime) -> LogEntry:
    moment = when if when.tzinfo is not None else when.astimezone()  # naive means local time
    for entry in ctx.log.chain(branch_head(ctx, branch)):
        if entry.created_at <= moment:
            return entry
    raise VersionNotFoundError(
        f"dataset {ctx.name!r} branch {branch!r} has no snapshot at or before {when.isoformat()}; "
        f"it was created {ctx.meta.created_at.isoformat()}"
    )
