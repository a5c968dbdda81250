"""Run an existing flow run of a Labelhouse ingest flow by its id, in this process, as a worker does.

    PREFECT_API_URL=... python tests/reliability/run_flow_run.py <flow-run-id>

The kill tests start a flow run this way, SIGKILL it, put it back to AwaitingRetry (what the UI's Retry
does) and run it again: the retried run keeps its flow run id, as a retry does. Exit code 0 when the run
completed.
"""

from __future__ import annotations

import sys
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow

from flows.sources import SOURCES


def main(flow_run_id: str) -> int:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        name = client.read_flow(run.flow_id).name
    flow = next(f for f in SOURCES.values() if f.name == name)
    state = run_flow(flow, flow_run=run, parameters=run.parameters, return_type="state")
    return 0 if state is not None and state.is_completed() else 1  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
