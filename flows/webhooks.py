"""The Label Studio webhook receiver behind `labelhouse webhooks`: accepted webhooks become Prefect events.

Label Studio POSTs JSON to `/label-studio` with our shared secret in the `X-Labelhouse-Secret` header
(set it in the webhook's headers). A bad request is answered 4xx with `{"detail": <reason>}` and
emits nothing: 401 no secret, 403 wrong secret, 413 body over the limit, 415 not JSON, 400 malformed
JSON, 422 JSON that is not a Label Studio webhook Labelhouse can apply. An accepted webhook is answered
202 once the Prefect API has taken it as a `labelhouse.label_studio.webhook` event (503 if it cannot be
reached), which starts the webhook deployment of `labelhouse serve`: it collects the project's webhook
events into its inbox and applies them in order, many per commit. A webhook that changes no labels
(e.g. PROJECT_UPDATED) is answered 200 and not emitted. The same webhook sent again is the same event
and commits nothing new. Label Studio waits about a second for an answer and never resends, so
nothing slow happens here.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prefect.client.orchestration import get_client

from storage import StorageError
from tasks.flow_tasks.events import deliver_webhook
from tasks.flow_tasks.label_studio import webhook_batch

SECRET_HEADER = "X-Labelhouse-Secret"
PATH = "/label-studio"
DEFAULT_MAX_BODY_BYTES = 1 << 20  # Label Studio payloads are a few KB; a task with huge data a few hundred

Emit = Callable[[dict[str, Any], str, str], Any]
logger = logging.getLogger("labelhouse.webhooks")


class Refused(Exception):
    """A request answered with a 4xx status and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def create_app(
    *,
    secret: str,
    catalog: str,
    project: str,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    emit: Emit | None = None,
) -> FastAPI:
    """The receiver for one catalog and project; `emit(payload, catalog, project)` sends the event (it may
    be a coroutine function; default: to the Prefect API over one client the app keeps open)."""
    if not secret:
        raise ValueError("the webhook secret is empty: pass --secret or set LABELHOUSE_WEBHOOK_SECRET")

    @asynccontextmanager
    async def prefect_client(app: FastAPI) -> AsyncIterator[None]:
        async with get_client() as client:  # a client per webhook costs more than the webhook itself
            app.state.emit = functools.partial(deliver_webhook, client=client)
            yield

    app = FastAPI(
        title="Labelhouse webhooks",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=prefect_client if emit is None else None,
    )
    app.state.emit = emit

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        logger.warning("refused %s %s: %s %s", request.method, request.url.path, exc.status, exc.reason)
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(PATH)
    async def label_studio(request: Request) -> JSONResponse:
        _check_secret(request, secret)
        _check_content_type(request)
        payload = _parse(await _read_body(request, max_body_bytes))
        if not _changes_labels(payload):
            return JSONResponse({"accepted": False, "reason": f"{payload['action']} changes no labels"})
        try:
            event = request.app.state.emit(payload, catalog, project)
            if inspect.isawaitable(event):
                event = await event
        except Exception as exc:  # Prefect unreachable: not acknowledged, so the sender may send it again
            logger.exception("handing a %s webhook to Prefect failed", payload["action"])
            return JSONResponse({"detail": f"cannot reach Prefect, send the webhook again: {exc!r}"}, status_code=503)
        event_id = str(event.id) if event is not None else None
        return JSONResponse({"accepted": True, "action": payload["action"], "event_id": event_id}, status_code=202)

    return app


def _check_secret(request: Request, secret: str) -> None:
    given = request.headers.get(SECRET_HEADER)
    if given is None:
        raise Refused(401, f"missing the {SECRET_HEADER} header; add it to the webhook's headers in Label Studio")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Refused(403, f"wrong {SECRET_HEADER}; use the secret `labelhouse webhooks` was started with")


def _check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise Refused(415, f"content type {media_type or 'none'!r}; send application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():  # a body without a length is counted as it arrives
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"body is over the limit of {limit} bytes")
    return bytes(body)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Refused(400, "malformed JSON: nested too deeply to parse") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
        raise Refused(422, "not a Label Studio webhook: expected a JSON object with an 'action'")
    return payload


def _changes_labels(payload: dict[str, Any]) -> bool:
    """Whether the webhook maps to any upsert or delete; Refused (422) if it cannot be mapped."""
    try:
        changes = webhook_batch(payload, flow_run_id=None).changes
    except StorageError as exc:  # SourceFormatError, LabelingConfigError: the payload's own problem
        raise Refused(422, str(exc)) from None
    except Exception as exc:
        # A payload that trips the mapping is still a bad payload to the sender: answer 4xx, log the cause.
        logger.exception("mapping a %s webhook failed", payload.get("action"))
        raise Refused(422, f"cannot map this {payload.get('action')} webhook: {exc!r}") from None
    tables = (changes.items, changes.annotations, changes.predictions)
    scopes = (changes.replaced_submissions, changes.deleted_items)
    return any(t.num_rows for t in tables) or any(scopes)


KEEP_ALIVE_SECONDS = 75


def serve_webhooks(app: FastAPI, host: str, port: int) -> None:
    """Run the receiver until interrupted."""
    import uvicorn  # only the receiver needs it

    # uvicorn closes a keep-alive connection idle for 5 s by default; a sender reusing it at that moment
    # sees a connection reset before its request is read. A longer idle timeout makes that race rarer.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=KEEP_ALIVE_SECONDS)
