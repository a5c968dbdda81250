"""A worker process for one engine: JSON jobs in on stdin, one JSON result line out per job.

Run as `python -m bench.peers.worker PEER` (from the repo root, in that peer's venv). The worker stays up
for many jobs so an engine's imports are paid once per run, not once per measurement; every job gets a
fresh adapter, closed afterwards. Results go to the original stdout; the process's fd 1 is pointed at
stderr, so whatever an engine prints (progress bars, Ray logs) cannot corrupt the protocol.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import traceback
from typing import Any

from . import PEERS
from .base import Peer, Unsupported
from .ops import OPS


def peer_class(name: str) -> type[Peer]:
    """The adapter class of a peer (the one Peer subclass its module defines)."""
    module = importlib.import_module(PEERS[name].module)
    classes = [c for _n, c in inspect.getmembers(module, inspect.isclass) if issubclass(c, Peer) and c.name == name]
    return classes[0]


def run(cls: type[Peer], job: dict[str, Any]) -> dict[str, Any]:
    """One job: {"op", "root", "args"} -> {"ok": figures} | {"unsupported": why} | {"error": what}."""
    try:
        peer = cls(job["root"])
        try:
            return {"ok": OPS[job["op"]](peer, job["args"])}
        finally:
            peer.close()
    except Unsupported as exc:
        return {"unsupported": str(exc)}
    except Exception as exc:  # reported in the results table; the worker carries on with the next job
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def main() -> None:
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    cls = peer_class(sys.argv[1])
    results.write(json.dumps({"ready": True, "version": version(cls)}) + "\n")
    results.flush()
    for line in sys.stdin:
        if line.strip():
            results.write(json.dumps(run(cls, json.loads(line))) + "\n")
            results.flush()


def version(cls: type[Peer]) -> str:
    """The engine's package version, for the report."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    try:
        return pkg_version(cls.version_of)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()
