"""A small client for Label Studio's REST API (checked against 1.23.2), authenticated by API token.

The token is a legacy API token, sent as `Authorization: Token <token>`: the one Label Studio sets from
`LABEL_STUDIO_USER_TOKEN` and accepts when `LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true` (JWT personal
access tokens would go as `Bearer` and are not supported here).

Task bodies come from the project export endpoint filtered by ids, so they have exactly the shape of a
JSON export file and go through the same parser. Which tasks to fetch comes from the Data Manager task
list (`GET /api/tasks/`), filtered and ordered by `updated_at`; see `pull.py` for how it is paged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self

import httpx

from ..errors import SourceError

JSON = dict[str, Any]

# The Data Manager parses Datetime filter values with exactly this format (naive, read as UTC).
_DM_DATETIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class LabelStudioAPIError(SourceError):
    """A Label Studio API call failed or answered something unusable; names the call and what to do."""

    def __init__(self, message: str, *, method: str, url: str, status: int | None) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status


class TaskVersion(NamedTuple):
    """A task id and its `updated_at`, as listed by the Data Manager."""

    id: int
    updated_at: datetime


class LabelStudioClient:
    """Typed calls to one Label Studio server. Use as a context manager, or call `close()`."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    # Projects and tasks

    def create_project(self, title: str, label_config: str, **fields: Any) -> JSON:
        """Create a project with a labeling config (XML); returns the project (with its `id`)."""
        return self._json("POST", "/api/projects/", json={"title": title, "label_config": label_config, **fields})

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Import tasks (`{"data": ..., "annotations": [...], "predictions": [...]}`); returns their ids."""
        path = f"/api/projects/{project_id}/import"
        body = self._json("POST", path, params={"return_task_ids": "true"}, json=list(tasks))
        if "task_ids" not in body:
            # A Label Studio with Redis imports in the background and answers with an import id only.
            raise self._error(
                "POST",
                f"{self.base_url}{path}",
                201,
                f"queued the import instead of running it ({json.dumps(body)[:200]}); import synchronously "
                f"(no Redis) or poll GET /api/projects/{project_id}/imports/<id>/",
            )
        return [int(i) for i in body["task_ids"]]

    def delete_task(self, task_id: int) -> None:
        """Delete a task with its annotations and predictions."""
        self._request("DELETE", f"/api/tasks/{task_id}/")

    # Annotations

    def create_annotation(self, task_id: int, result: Sequence[Mapping[str, Any]], **fields: Any) -> JSON:
        """Annotate a task as the token's user; `fields` may add lead_time, was_cancelled, ground_truth..."""
        return self._json("POST", f"/api/tasks/{task_id}/annotations/", json={"result": list(result), **fields})

    def update_annotation(self, annotation_id: int, **fields: Any) -> JSON:
        """Change fields of an annotation (PATCH), e.g. `result=[...]`; returns the updated annotation."""
        return self._json("PATCH", f"/api/annotations/{annotation_id}/", json=fields)

    def delete_annotation(self, annotation_id: int) -> None:
        """Delete an annotation."""
        self._request("DELETE", f"/api/annotations/{annotation_id}/")

    # Reading changes

    def list_task_versions(
        self, project_id: int, *, since: datetime | None, inclusive: bool, limit: int
    ) -> list[TaskVersion]:
        """The first `limit` tasks updated at/after `since` (all when None), ordered by `updated_at`.

        Ties on `updated_at` come back in no defined order: see `list_task_versions_at`.
        """
        items = []
        if since is not None:
            operator = "greater_or_equal" if inclusive else "greater"
            items.append(_datetime_filter(operator, _dm_datetime(since)))
        return self._task_versions(project_id, items, "tasks:updated_at", limit)

    def list_task_versions_at(
        self, project_id: int, *, updated_at: datetime, after_id: int, limit: int
    ) -> list[TaskVersion]:
        """The first `limit` tasks with exactly this `updated_at` and an id above `after_id`, by id."""
        exact = _dm_datetime(updated_at)
        items = [
            _datetime_filter("in", {"min": exact, "max": exact}),
            _id_filter(after_id),
        ]
        return self._task_versions(project_id, items, "tasks:id", limit)

    def list_task_ids(self, project_id: int, *, page_size: int = 1000) -> list[int]:
        """Ids of every task in the project now, ascending.

        Paged by id rather than by page number, so tasks deleted or created meanwhile never shift a
        page and hide a task that exists throughout.
        """
        ids: list[int] = []
        while True:
            after = [_id_filter(ids[-1])] if ids else []
            page = self._task_versions(project_id, after, "tasks:id", page_size)
            ids.extend(version.id for version in page)
            if len(page) < page_size:
                return ids

    def export_tasks(self, project_id: int, task_ids: Iterable[int]) -> list[JSON]:
        """These tasks exactly as a JSON export has them (annotations, drafts, predictions embedded).

        Ids of tasks that no longer exist are skipped. Pass at most a few hundred ids per call: they
        travel in the query string.
        """
        ids = [str(i) for i in task_ids]
        if not ids:
            return []
        params = {"exportType": "JSON", "download_all_tasks": "true", "download_resources": "false", "ids[]": ids}
        path = f"/api/projects/{project_id}/export"
        response = self._request("GET", path, params=params)
        body = _decode(response)
        if not isinstance(body, list):
            raise self._error("GET", response.request.url, response.status_code, "did not return a list of tasks")
        return body

    # Webhooks

    def create_webhook(
        self,
        project_id: int,
        url: str,
        *,
        actions: Sequence[str] = (),
        send_payload: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> JSON:
        """Register a project webhook for `actions` (e.g. "ANNOTATION_CREATED"); no actions means all."""
        body = {
            "project": project_id,
            "url": url,
            "send_payload": send_payload,
            "send_for_all_actions": not actions,
            "actions": list(actions),
            "headers": dict(headers or {}),
            "is_active": True,
        }
        return self._json("POST", "/api/webhooks/", json=body)

    # Plumbing

    def _task_versions(self, project_id: int, filters: list[JSON], ordering: str, limit: int) -> list[TaskVersion]:
        query: JSON = {"ordering": [ordering]}
        if filters:
            query["filters"] = {"conjunction": "and", "items": filters}
        params = {
            "project": project_id,
            "page": 1,
            "page_size": limit,
            "include": "id,updated_at",
            "resolve_uri": "false",
            "query": json.dumps(query),
        }
        body = self._json("GET", "/api/tasks/", params=params)
        try:
            return [TaskVersion(int(t["id"]), parse_timestamp(t["updated_at"])) for t in body["tasks"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._error(
                "GET", f"{self.base_url}/api/tasks/", 200, f"returned a task list without ids or dates ({exc!r})"
            ) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> JSON:
        response = self._request(method, path, **kwargs)
        body = _decode(response)
        if not isinstance(body, dict):
            raise self._error(method, response.request.url, response.status_code, "did not return a JSON object")
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioAPIError(
                f"Label Studio {method} {self.base_url}{path} failed: {exc}. Is Label Studio running at "
                f"{self.base_url}? (for a local one: `python infra/label_studio.py start`)",
                method=method,
                url=f"{self.base_url}{path}",
                status=None,
            ) from exc
        if response.is_success:
            return response
        raise self._error(method, response.request.url, response.status_code, f"answered: {_detail(response)}")

    @staticmethod
    def _error(method: str, url: httpx.URL | str, status: int, what: str) -> LabelStudioAPIError:
        where = str(url).split("?", 1)[0]  # the query (filters, ids) stays in `.url`, out of the message
        return LabelStudioAPIError(
            f"Label Studio {method} {where} {what} (HTTP {status}). {_hint(status)}",
            method=method,
            url=str(url),
            status=status,
        )


def _datetime_filter(operator: str, value: str | JSON) -> JSON:
    return {"filter": "filter:tasks:updated_at", "operator": operator, "type": "Datetime", "value": value}


def _id_filter(after_id: int) -> JSON:
    return {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after_id}


def _dm_datetime(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; Label Studio compares updated_at in UTC")
    return moment.astimezone(UTC).strftime(_DM_DATETIME)


def parse_timestamp(text: str) -> datetime:
    """A Label Studio timestamp (ISO 8601, `Z` or an offset) as an aware UTC datetime; ValueError if not."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(UTC)


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise LabelStudioClient._error(
            response.request.method,
            response.request.url,
            response.status_code,
            f"returned non-JSON content ({response.text[:200]!r})",
        ) from None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or "(empty body)"
    if isinstance(body, dict):
        # Label Studio puts the reason in `detail` and field errors in `validation_errors`.
        parts = [str(body.get("detail") or "")]
        if body.get("validation_errors"):
            parts.append(json.dumps(body["validation_errors"], ensure_ascii=False)[:1000])
        return ": ".join(p for p in parts if p) or json.dumps(body)[:500]
    return json.dumps(body)[:500]


def _hint(status: int) -> str:
    if status == 401:
        return (
            "Check the API token; a legacy token needs LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the "
            "server and goes as `Authorization: Token <token>`."
        )
    if status == 403:
        return "The token's user lacks permission for this project; use a token of the project's organization."
    if status == 404:
        return "Check the project, task or annotation id: it does not exist (or was deleted) on this server."
    if status in (400, 409, 422):
        return "Label Studio rejected the request; fix what the message above names."
    if status >= 500:
        return "Label Studio failed internally; see its server log, then retry."
    return "See Label Studio's server log."
