"""The Prefect events Labelhouse emits, and the resources they are about.

`labelhouse.dataset.committed` is about the resource `labelhouse.dataset.<catalog uri>.<dataset>`, with
the catalog and dataset also as resource labels and in the payload (snapshot id and row counts), so
triggers can match a catalog and hand the snapshot to the refresh flow. `labelhouse.label_studio.webhook`
carries an accepted Label Studio webhook as its payload, about the resource of the Label Studio project,
labelled with the catalog and Labelhouse project to ingest it into.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.events import Event, Resource, emit_event
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventResourceFilter,
)
from prefect.events.schemas.events import ResourceSpecification

from ..json_source import canonical_sha256
from .outcome import BatchOutcome, TableOutcome

DATASET_COMMITTED = "labelhouse.dataset.committed"
WEBHOOK_RECEIVED = "labelhouse.label_studio.webhook"
CATALOG_LABEL = "labelhouse.catalog"
DATASET_LABEL = "labelhouse.dataset"
PROJECT_LABEL = "labelhouse.project"
DATASET_RESOURCE_PREFIX = "labelhouse.dataset."
WEBHOOK_RESOURCE_PREFIX = "labelhouse.label_studio.project."
EVENTS_PAGE_SIZE = 50  # the most the events API returns per page
CLOCK_SKEW = timedelta(days=1)  # the receiver's clock may run ahead of ours; its events still count


def dataset_resource(catalog_uri: str, dataset: str) -> dict[str, str]:
    """The resource of a dataset in a catalog."""
    return {
        "prefect.resource.id": f"{DATASET_RESOURCE_PREFIX}{catalog_uri}.{dataset}",
        "prefect.resource.name": dataset,
        CATALOG_LABEL: catalog_uri,
        DATASET_LABEL: dataset,
    }


def committed_payload(batch: BatchOutcome, table: TableOutcome) -> dict[str, Any]:
    """What a committed event says: where, which snapshot, and the rows it changed or rejected."""
    return {
        "catalog": batch.catalog,
        "project": batch.project,
        "dataset": table.dataset,
        "snapshot_id": table.snapshot_id,
        "parent_id": table.parent_id,
        "rows_inserted": table.inserted,
        "rows_updated": table.updated,
        "rows_deleted": table.deleted,
        "rows_rejected": table.rejected,
        "idempotency_key": batch.idempotency_key,
    }


def emit_committed(batch: BatchOutcome) -> list[str]:
    """Emit one committed event per dataset the batch changed; returns the event ids.

    Ids derive from the dataset and snapshot, so emitting again after a retry sends the same event.
    """
    emitted = []
    for table in batch.tables:
        if not table.changed:
            continue
        resource = dataset_resource(batch.catalog, table.dataset)
        event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{resource['prefect.resource.id']}@{table.snapshot_id}")
        emit_event(DATASET_COMMITTED, resource=resource, payload=committed_payload(batch, table), id=event_id)
        emitted.append(str(event_id))
    return emitted


def webhook_resource(catalog_uri: str, project: str, label_studio_project: Any) -> dict[str, str]:
    """The resource a webhook event is about: the Label Studio project, labelled with where it goes."""
    return {
        "prefect.resource.id": f"{WEBHOOK_RESOURCE_PREFIX}{label_studio_project}",
        CATALOG_LABEL: catalog_uri,
        PROJECT_LABEL: project,
    }


def webhook_event(payload: dict[str, Any], catalog_uri: str, project: str) -> Event:
    """An accepted webhook as a `labelhouse.label_studio.webhook` event.

    The id derives from the content and the destination, so the same webhook delivered twice (a sender
    that retries after a lost answer) is the same event, which Prefect stores and triggers on once.
    """
    ls_project = payload.get("project")
    ls_project_id = ls_project.get("id", "unknown") if isinstance(ls_project, dict) else "unknown"
    resource = webhook_resource(catalog_uri, project, ls_project_id)
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{catalog_uri}#{project}#{canonical_sha256(payload)}")
    return Event(event=WEBHOOK_RECEIVED, resource=Resource(resource), payload=payload, id=event_id)


async def deliver_webhook(payload: dict[str, Any], catalog_uri: str, project: str, client: PrefectClient) -> Event:
    """Send the webhook's event to the Prefect API and wait until the API has taken it (raises if not).

    Not `emit_event`: that queues the event for a background sender, so a receiver killed after
    answering would lose webhooks it had acknowledged.
    """
    event = webhook_event(payload, catalog_uri, project)
    await client.request("POST", "/events", json=[event.model_dump(mode="json")])
    return event


@dataclass(frozen=True)
class WebhookEvent:
    """An accepted webhook as Prefect holds it."""

    id: str
    occurred: datetime
    payload: dict[str, Any]


def read_webhook_events(
    client: SyncPrefectClient, catalog_uri: str, project: str, since: datetime
) -> list[WebhookEvent]:
    """The webhook events for this catalog and project that occurred at `since` or later, oldest first."""
    labels = ResourceSpecification({CATALOG_LABEL: catalog_uri, PROJECT_LABEL: project})
    query = EventFilter(
        # Validation turns the datetimes into Prefect's own type.
        occurred=EventOccurredFilter.model_validate({"since": since, "until": datetime.now(UTC) + CLOCK_SKEW}),
        event=EventNameFilter(name=[WEBHOOK_RECEIVED]),
        resource=EventResourceFilter(labels=labels),
        order=EventOrder.ASC,
    )
    found: list[WebhookEvent] = []
    page = client.read_events(filter=query, limit=EVENTS_PAGE_SIZE)
    while True:
        found += [WebhookEvent(str(e.id), e.occurred, dict(e.payload)) for e in page.events]
        if page.next_page is None:
            return found
        page = client.read_events_page(str(page.next_page))
