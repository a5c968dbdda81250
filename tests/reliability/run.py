"""Run the whole reliability suite and write its table (default bench/results/reliability.md).

    .venv/bin/python tests/reliability/run.py [--seconds 60] [--out PATH] [--fast] [-- pytest args]

The tests append one JSON line per trial and per load run to a results file (see report.py); this script
runs pytest with that file set, then renders it as markdown. The exit code is pytest's.
"""

from __future__ import annotations

import argparse
import os
import platform
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reliability.md")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each full load run")
    parser.add_argument("--fast", action="store_true", help="only the fast subset that `make test` runs")
    parser.add_argument("--fuzz-examples", type=int, default=2000, help="Hypothesis inputs per parser (full run)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        env = {**os.environ, RESULTS_ENV: str(results), "LABELHOUSE_LOAD_SECONDS": str(args.seconds)}
        if not args.fast:  # `make test` fuzzes a few hundred inputs per parser; the full run many more
            env["LABELHOUSE_FUZZ_EXAMPLES"] = str(args.fuzz_examples)
        if args.fast:
            selection = ["-m", "not reliability"]
        else:
            selection = ["-k", "not faults_at_the_commit", *(f"--deselect={t}" for t in FAST_ONLY)]
        command = [sys.executable, "-m", "pytest", "tests/reliability", "-p", "no:cacheprovider", "-q", "-rfEX"]
        started = time.monotonic()
        code = subprocess.call([*command, *selection, *args.pytest_args], cwd=REPO, env=env)
        minutes = (time.monotonic() - started) / 60
        notes = [
            f"`{' '.join(['tests/reliability/run.py', *(argv if argv is not None else sys.argv[1:])])}` on "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} CPUs): "
            f"{minutes:.1f} min, pytest exit code {code}.",
            "",
            "Local disk: every fault at every store call of each operation (found on a dry run). S3 (moto "
            "server on 127.0.0.1): every fault at every write, conditional put, delete and listing; faults at "
            "plain reads act above the store the same way and run on local disk. `+outage`: a lost response "
            "of a conditional put followed by 1-3 failing calls. A trial that raised is retried without "
            "faults (same process, same idempotency key) and must then land exactly once.",
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
