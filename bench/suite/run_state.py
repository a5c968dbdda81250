"""A run's settings and bookkeeping: who goes when, each job's outcome, and what to skip after a timeout."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .inputs import Inputs, Sizes
from .workers import Pool


@dataclass(frozen=True)
class Plan:
    """Repetitions, time budgets and timeouts: the full run's, or the smoke run's."""

    ingest_reps: int = 2
    access_reps: int = 2
    scan_reps: int = 5
    upsert_reps: int = 3
    view_rounds: int = 2
    access_budget_s: float = 3.0  # per timed loop of W2: slow engines get as many reads as fit
    timeout_s: float = 600.0
    upsert_timeout_s: float = 30.0


QUICK_PLAN = Plan(
    ingest_reps=1,
    access_reps=1,
    scan_reps=2,
    upsert_reps=1,
    view_rounds=1,
    access_budget_s=1.5,
    timeout_s=120.0,
    upsert_timeout_s=20.0,
)


@dataclass
class Sample:
    """One job's outcome: {"ok": figures} | {"unsupported": why} | {"timeout": s} | {"error": what}."""

    workload: str
    case: str
    peer: str
    rep: int
    result: dict[str, Any]


@dataclass
class Run:
    """Everything a workload needs, and the samples it leaves."""

    pool: Pool
    inputs: Inputs
    peers: list[str]
    workdir: str
    plan: Plan
    samples: list[Sample] = field(default_factory=list)
    # A peer whose upsert of 1% timed out in W4 is not asked to do W5's twenty of them.
    blocked: dict[str, str] = field(default_factory=dict)
    elapsed: dict[str, float] = field(default_factory=dict)

    def root(self, peer: str) -> str:
        """The directory a peer keeps its tables in."""
        return os.path.join(self.workdir, "peers", peer)

    def order(self, rep: int) -> list[str]:
        """Peers in the order they take turns in repetition `rep`: rotated, so none is always first."""
        k = rep % len(self.peers)
        return self.peers[k:] + self.peers[:k]

    def _timed_out(self, workload: str, case: str, peer: str) -> bool:
        return any(
            s.workload == workload and s.case == case and s.peer == peer and "timeout" in s.result for s in self.samples
        )

    def job(
        self, workload: str, case: str, peer: str, rep: int, op: str, args: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Run one job on the peer's worker and record it; a case that timed out once is not run again."""
        if self._timed_out(workload, case, peer):
            return {"skipped": True}
        result = self.pool.worker(peer).call(op, self.root(peer), args, timeout or self.plan.timeout_s)
        self.samples.append(Sample(workload, case, peer, rep, result))
        return result

    def setup(self, workload: str, case: str, peer: str, op: str, args: dict[str, Any]) -> bool:
        """A preparation job (creating a workload's table); only a failure is recorded, under the case."""
        result = self.pool.worker(peer).call(op, self.root(peer), args, self.plan.timeout_s)
        if "ok" not in result:
            self.note(workload, case, peer, {k: f"setup: {v}" if isinstance(v, str) else v for k, v in result.items()})
        return "ok" in result

    def note(self, workload: str, case: str, peer: str, result: dict[str, Any]) -> None:
        """Record an outcome that needed no job (a skip with its reason)."""
        self.samples.append(Sample(workload, case, peer, 0, result))

    def clock(self, workload: str, started: float) -> None:
        """Remember how long a workload took (the report lists it against the 30-minute budget)."""
        self.elapsed[workload] = time.perf_counter() - started


@dataclass
class Results:
    """What a finished run leaves for the report and the charts (and latest.json, to re-render later)."""

    peers: list[str]
    samples: list[Sample]
    plan: Plan
    sizes: Sizes
    elapsed: dict[str, float]
    machine: dict[str, str]
    versions: dict[str, str]
    minutes: float
    quick: bool
    finished: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M %Z"))

    @staticmethod
    def of(run: Run, machine: dict[str, str], versions: dict[str, str], minutes: float, quick: bool) -> Results:
        """The results of a run."""
        sizes = run.inputs.sizes
        return Results(run.peers, run.samples, run.plan, sizes, run.elapsed, machine, versions, minutes, quick)

    def save(self, path: str) -> None:
        """As JSON."""
        with open(path, "w") as f:
            json.dump(asdict(self), f, indent=1)

    @staticmethod
    def load(path: str) -> Results:
        """From the JSON save() wrote."""
        with open(path) as f:
            d = json.load(f)
        d["samples"] = [Sample(**s) for s in d["samples"]]
        d["plan"], d["sizes"] = Plan(**d["plan"]), Sizes(**d["sizes"])
        return Results(**d)
