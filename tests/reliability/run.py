"""Run the whole reliability suite and write its table (default bench/results/reliability.md).

    .venv/bin/python tests/reliability/run.py [--seconds 60] [--out PATH] [--fast] [--lanes N] [-- pytest args]

The tests append one JSON line per trial and per load run to a results file (see report.py); this script
runs pytest with that file set, then renders it as markdown. The exit code is pytest's (the worst lane's).

The full run spreads the test modules over LANES, one pytest process each, run side by side: most of the
suite waits (on moto's S3 server, on Prefect servers and flow runs, on load runs' deadlines), so two cores
carry three lanes in about the time of the longest. `--lanes 1` runs everything in one pytest process.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from report import RESULTS_ENV, load_results, render  # noqa: E402  (the suite's folder is not a package)

# The full run covers what these fast tests do (same trials, shorter loads), so it skips them.
# (--deselect matches node id prefixes: no other test name may start with these.)
FAST_ONLY = [
    "tests/reliability/test_load.py::test_load_local_fast",
    "tests/reliability/test_load.py::test_load_s3_fast",
]

# The long version-control model run lives beside its short variants in tests/storage.
LONG_MODEL = "../storage/test_versions_model.py::test_versions_match_model_long"

# Lanes of the full run: test modules, and a -k expression when a module is split between lanes. The
# service lanes wait on Prefect servers and flow runs, the S3 lane on moto's server; the longest lane first.
LANES: list[tuple[list[str], str | None]] = [
    (["test_restarts.py"], None),  # Prefect server restart, webhook receiver kills, 2,000 webhooks
    (["test_kills.py"], None),  # SIGKILLed ingests run again
    (["test_fault_matrix.py"], "s3"),
    (["test_fault_matrix.py", "test_faulty_store.py", "test_regressions.py"], "not s3"),
    (["test_load.py", "test_fuzz_parsers.py", "test_hostile_inputs.py", "test_hostile_heavy.py", LONG_MODEL], None),
]


def lanes(count: int) -> list[list[str]]:
    """The pytest arguments of each of `count` lanes (at most len(LANES)); every module of the suite in one."""
    modules = sorted(p.name for p in HERE.glob("test_*.py"))
    assigned = sorted({m for lane, _ in LANES for m in lane if m != LONG_MODEL})
    if assigned != modules:  # a new module must be given a lane, or the full run would skip it
        raise SystemExit(f"run.py LANES list {assigned}, the suite has {modules}: add the new module to a lane")
    if count <= 1:
        return [[str(HERE.relative_to(REPO)), str(HERE.relative_to(REPO) / LONG_MODEL)]]
    out = []
    for i, (lane, k) in enumerate(LANES[:count]):
        if i == count - 1:  # the last lane runs whatever the lanes cut off would have
            lane = sorted({m for rest, _ in LANES[i:] for m in rest})
            k = None
        out.append([*(str(HERE.relative_to(REPO) / m) for m in lane), *(["-k", k] if k else [])])
    return out


def _full(lane: list[str]) -> list[str]:
    """A lane's arguments for the full run: without the fast tests it covers (see FAST_ONLY)."""
    paths = [a for a in lane if a.endswith(".py") or "::" in a or a.endswith("reliability")]
    k = lane[lane.index("-k") + 1] if "-k" in lane else None
    expression = f"({k}) and not faults_at_the_commit" if k else "not faults_at_the_commit"
    return [*paths, "-k", expression, *(f"--deselect={t}" for t in FAST_ONLY)]


def run_lanes(commands: list[list[str]], env: dict[str, str], logs: Path) -> int:
    """Run the commands side by side, each logging to a file; print each log when it ends. Worst exit code."""
    running = []
    for i, command in enumerate(commands):
        log = logs / f"lane-{i}.log"
        print(f"lane {i}: {shlex.join(command)} (log: {log})", flush=True)
        with log.open("wb") as out:
            running.append((log, subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)))
    codes = []
    for i, (log, process) in enumerate(running):
        codes.append(process.wait())
        print(f"\n===== lane {i} (exit code {codes[-1]}) =====\n{log.read_text(errors='replace')}", flush=True)
    return max(codes, key=lambda c: (c != 0, abs(c)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reliability.md")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each full load run")
    parser.add_argument("--fast", action="store_true", help="only the fast subset that `make test` runs")
    parser.add_argument("--fuzz-examples", type=int, default=1000, help="Hypothesis inputs per parser (full run)")
    parser.add_argument("--lanes", type=int, default=len(LANES), help="pytest processes side by side (full run)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        env = {**os.environ, RESULTS_ENV: str(results), "LABELHOUSE_LOAD_SECONDS": str(args.seconds)}
        if not args.fast:  # `make test` fuzzes a few hundred inputs per parser; the full run many more
            env["LABELHOUSE_FUZZ_EXAMPLES"] = str(args.fuzz_examples)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEX"]
        started = time.monotonic()
        if args.fast:
            code = subprocess.call(
                [*command, "tests/reliability", "-m", "not reliability", *args.pytest_args], cwd=REPO, env=env
            )
        else:
            commands = [[*command, *_full(lane), *args.pytest_args] for lane in lanes(args.lanes)]
            code = run_lanes(commands, env, Path(tmp))
        minutes = (time.monotonic() - started) / 60
        notes = [
            f"`{' '.join(['tests/reliability/run.py', *(argv if argv is not None else sys.argv[1:])])}` on "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} CPUs): "
            f"{minutes:.1f} min{'' if args.fast else f' ({len(lanes(args.lanes))} pytest processes side by side)'}"
            f", pytest exit code {code}.",
            "",
            "Local disk: every fault at every store call of each operation (found on a dry run). S3 (moto "
            "server on 127.0.0.1): every fault at every write, conditional put, delete and listing; faults at "
            "plain reads act above the store the same way and run on local disk. `+outage`: a lost response "
            "of a conditional put followed by 1-3 failing calls. A trial that raised is retried without "
            "faults (same process, same idempotency key) and must then land exactly once. `row images`: the "
            "operations that write change logs, on a dataset with WriteOptions.log_row_images (on S3 every "
            "fault at the commit); there diff() from the world's head to every new snapshot must equal the model.",
            "",
            "Process kills and restarts run against a real Prefect server on 127.0.0.1 (test_kills.py, "
            "test_restarts.py): an ingest's process group SIGKILLed mid-run then run again (a new flow run, or "
            "the same run retried); the Prefect server restarted under a served run; the webhook receiver "
            "SIGKILLed with webhooks in flight from a resending client. Each ends with an audit: source rows "
            "exactly once, one commit per change, validate() clean, nothing left after vacuum and maintenance.",
        ]
        notes += [
            "",
            "Hostile input: Hypothesis mutates the real fixtures structurally (dropped keys, wrong types, nulls, "
            "huge and non-finite numbers, odd unicode, deep nesting, hostile tar members) for every parser, "
            f"{'200' if args.fast else args.fuzz_examples} inputs per test (commit-path tests a twentieth), "
            "plus the explicit cases listed under Hostile input.",
        ]
        markdown = render(load_results(results), "Reliability: faults and load", notes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"written to {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
