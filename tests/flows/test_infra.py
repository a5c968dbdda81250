"""infra/: prefect.yaml matches the served deployments and deploys to a worker that runs them; the service
script starts and stops each service on 127.0.0.1; the README documents every variable the files read."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from _flowkit import REPO, PrefectServer, free_port, wait_for
from prefect.client.orchestration import get_client
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.deployments import ServeOptions, build_deployments

INFRA = REPO / "infra"
PREFECT_YAML = yaml.safe_load((INFRA / "prefect.yaml").read_text())


def test_prefect_yaml_declares_the_served_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # entrypoints are relative to the repository root, where `prefect deploy` runs
    declared = {}
    for deployment in PREFECT_YAML["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        params = set(flow.parameters.properties)
        assert set(deployment.get("parameters", {})) <= params, deployment["name"]
        for trigger in deployment.get("triggers", []):
            assert set(trigger["parameters"]) <= params, deployment["name"]
        declared[(flow.name, deployment["name"])] = sorted(
            (e, sorted(t["parameters"]), float(t.get("within", 0)), sorted(t.get("for_each", [])))
            for t in deployment.get("triggers", [])
            for e in t["expect"]
        )
    served = {
        (d.flow_name, d.name): sorted(
            (e, sorted(t.parameters or {}), t.within.total_seconds(), sorted(t.for_each))
            for t in d.triggers
            for e in t.expect
        )
        for d in build_deployments(ServeOptions(catalog=str(REPO / "lakehouse"), project="default"))
    }
    assert declared == served


@pytest.mark.slow
@pytest.mark.integration
def test_prefect_deploy_puts_the_deployments_on_a_worker_that_runs_them(
    prefect_server: PrefectServer, services: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "lakehouse"
    env = {
        **prefect_server.env,
        "LABELHOUSE_REPO": str(REPO),
        "LABELHOUSE_CATALOG": str(catalog),
        "LABELHOUSE_PROJECT": "deployed",
        "LABEL_STUDIO_URL": "http://127.0.0.1:1",
        "LABEL_STUDIO_PROJECT": "1",
        "LABELHOUSE_PULL_CRON": "0 0 1 1 *",
        "LABELHOUSE_BUCKET_URL": "s3://labelhouse-deploy-test/incoming/",
        "LABELHOUSE_BUCKET_CRON": "0 0 1 1 *",
        "LABELHOUSE_MAINTENANCE_CRON": "0 0 1 1 *",
        "LABELHOUSE_WORK_POOL": "labelhouse",
    }
    prefect = str(Path(sys.executable).parent / "prefect")
    subprocess.run(
        [prefect, "work-pool", "create", "labelhouse", "--type", "process", "--overwrite"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    deployed = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(INFRA / "prefect.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    services.start("prefect-worker", port=free_port(), timeout=180)
    try:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("maintain-catalog/nightly")
            assert deployment.parameters == {"catalog": str(catalog)}
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"datasets": []})

            def finished() -> bool:
                state = client.read_flow_run(run.id).state
                return state is not None and state.is_final()

            wait_for(finished, 420)
            assert client.read_flow_run(run.id).state.is_completed()
    finally:
        services.stop("prefect-worker")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_s3_server_starts_serves_and_stops(
    services: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("LABELHOUSE_INFRA_STATE", str(tmp_path))
    running = services.start("s3", port=free_port())
    try:
        s3 = boto3.client(
            "s3", endpoint_url=running.url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        s3.create_bucket(Bucket="labelhouse")
        s3.put_object(Bucket="labelhouse", Key="a.txt", Body=b"hello")
        assert s3.get_object(Bucket="labelhouse", Key="a.txt")["Body"].read() == b"hello"
        status = subprocess.run(
            [sys.executable, str(INFRA / "services.py"), "status"], capture_output=True, text=True, check=True
        )
        assert f"s3: running at {running.url}" in status.stdout
    finally:
        assert services.stop("s3")
    assert not _port_open(running.port)
    assert services.running("s3") is None


@pytest.mark.slow
@pytest.mark.integration
def test_ray_head_starts_on_loopback_and_stops(
    services: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELHOUSE_INFRA_STATE", str(tmp_path))
    running = services.start("ray-head", port=free_port(), timeout=240)
    try:
        assert running.url == f"127.0.0.1:{running.port}" and _port_open(running.port)
    finally:
        services.stop("ray-head")
    deadline = time.monotonic() + 30
    while _port_open(running.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _port_open(running.port)


def test_a_taken_port_is_reported(services: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELHOUSE_INFRA_STATE", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(services.ServiceError, match="is taken"):
            services.start("s3", port=taken.getsockname()[1])


def _variables(text: str) -> set[str]:
    return set(re.findall(r"\b((?:LABELHOUSE|LABEL_STUDIO|PREFECT)_[A-Z0-9_]+)\b", text))


def test_the_readme_documents_every_variable_infra_reads() -> None:
    readme = (INFRA / "README.md").read_text()
    used: set[str] = set()
    for path in (INFRA / "services.py", INFRA / "browser.sh", INFRA / "prefect.yaml"):
        used |= _variables(path.read_text())
    # Variables the scripts set for the processes they start, not ones a user sets.
    set_for_children = {"PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_UI_API_URL"}
    set_for_children |= {"PREFECT_WORKER_WEBSERVER_HOST", "PREFECT_WORKER_WEBSERVER_PORT"}
    missing = sorted(v for v in used - set_for_children if f"`{v}`" not in readme)
    assert missing == [], f"infra/README.md does not document {missing}"
