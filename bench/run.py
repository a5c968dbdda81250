"""The benchmark suite of issue 9: Labelhouse against Lance, Delta, Iceberg, HF datasets, Parquet and Space.

`make bench` runs it (`python bench/run.py`): W1..W7 on every engine, interleaved, in under 30 minutes on
two cores; `--quick` is a three-minute smoke run on small data. It writes bench/results/latest.md (a table
per workload, the machine, every engine's version), a PNG chart per workload, latest.json (every sample;
`--render latest.json` redraws the page from it) and one log per engine under logs/, then prints the
targets. The first run creates .venv-space for Space (a few minutes). The other engines come from the
project's `bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.peers import PEERS
from bench.suite import charts, machine, report, spacevenv
from bench.suite.inputs import QUICK, Inputs, Sizes
from bench.suite.run_state import QUICK_PLAN, Plan, Results, Run
from bench.suite.specs import params
from bench.suite.workers import Pool
from bench.suite.workloads import WORKLOADS, run_all

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, one repetition (~3 minutes)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated engines (default: all)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="e.g. W1,W2 (later ones use earlier tables)")
    parser.add_argument("--workdir", default=None, help="where tables go (default: a temp dir, removed after)")
    parser.add_argument("--out", default=RESULTS, help="results directory")
    parser.add_argument("--render", metavar="JSON", help="only redraw latest.md and the charts from a latest.json")
    args = parser.parse_args()
    if args.render:
        write(Results.load(args.render), args.out)
        return

    started = time.perf_counter()
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {list(PEERS)}")
    sizes, plan = (QUICK, QUICK_PLAN) if args.quick else (Sizes(), Plan())
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="lh-bench-")
    pythons = {"main": sys.executable}
    if any(PEERS[p].venv == "space" for p in peers):
        pythons["space"] = spacevenv.python()
    facts = machine.describe(workdir)
    pool = Pool(pythons, os.path.join(args.out, "logs"))
    run = Run(pool, Inputs(os.path.join(workdir, "inputs"), sizes), peers, workdir, plan)
    try:
        run_all(run, [w for w in args.workloads.split(",") if w])
    finally:
        pool.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    minutes = (time.perf_counter() - started) / 60
    results = Results.of(run, facts, pool.versions(), minutes, args.quick)
    results.save(os.path.join(args.out, "latest.json"))
    write(results, args.out)


def write(results: Results, out: str) -> None:
    """latest.md and the charts; then the targets on stdout."""
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write(report.render(results))
    charts.draw_all(results, out)
    print("\n".join(report.targets(results, params(results.sizes))))
    print(f"wrote {os.path.join(out, 'latest.md')} ({results.minutes:.1f} min run)")


if __name__ == "__main__":
    main()
