"""Worker processes, one per engine, driven over pipes with a timeout per job.

A job that overruns its timeout gets its worker killed (the whole process group: Ray and friends too) and
is reported as a timeout; the next job for that engine starts a fresh worker. Each worker's stderr goes
to a log file under the results directory, which is the first place to look when a cell says `error`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from typing import Any, TextIO

from bench.peers import PEERS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT_S = 300  # imports alone take 5-10 s on a loaded 2-core machine


class Worker:
    """One engine's worker process."""

    def __init__(self, peer: str, python: str, log_dir: str) -> None:
        self.peer = peer
        self.python = python
        self.log_path = os.path.join(log_dir, f"{peer}.log")
        self.version = "?"
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log: TextIO | None = None

    def start(self) -> None:
        """Start the process and wait until the engine is imported (no-op if it is running)."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()

    def _start(self) -> None:
        self._log = open(self.log_path, "a")  # noqa: SIM115 (lives as long as the process)
        env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            [self.python, "-m", "bench.peers.worker", self.peer],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # its own process group, so a kill takes its children (Ray) along
        )
        self._lines = queue.Queue()
        stdout = self._proc.stdout
        assert stdout is not None
        threading.Thread(target=self._pump, args=(stdout, self._lines), daemon=True).start()
        ready = self._next(START_TIMEOUT_S)
        if ready is None or "ready" not in ready:
            self.kill()
            raise RuntimeError(f"worker for {self.peer} did not start: see {self.log_path}")
        self.version = ready.get("version", "?")

    @staticmethod
    def _pump(stream: TextIO, lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _next(self, timeout: float) -> dict[str, Any] | None:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if line is None else json.loads(line)

    def submit(self, op: str, root: str, args: dict[str, Any]) -> None:
        """Send a job (starting the worker if needed)."""
        self.start()
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"op": op, "root": root, "args": args}) + "\n")
        self._proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        """The submitted job's result, or {"timeout": s} / {"error": ...} if the worker overran or died."""
        t0 = time.monotonic()
        got = self._next(timeout)
        if got is not None:
            return got
        overran = time.monotonic() - t0 >= timeout
        self.kill()
        if overran:
            return {"timeout": timeout}
        return {"error": f"worker died: see {self.log_path}"}

    def call(self, op: str, root: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one job and wait for its result."""
        try:
            self.submit(op, root, args)
        except RuntimeError as exc:
            return {"error": str(exc)}
        return self.result(timeout)

    def kill(self) -> None:
        """Stop the worker and everything it started."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """End the worker cleanly (stdin closed), or kill it if it hangs."""
        if self._proc is not None and self._proc.poll() is None and self._proc.stdin is not None:
            self._proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=30)
        self.kill()


class Pool:
    """The long-lived workers, one per engine, started on first use."""

    def __init__(self, pythons: dict[str, str], log_dir: str) -> None:
        self._pythons = pythons
        self._log_dir = log_dir
        self._workers: dict[str, Worker] = {}

    def python(self, peer: str) -> str:
        """The interpreter of the venv a peer runs in."""
        return self._pythons[PEERS[peer].venv]

    def worker(self, peer: str) -> Worker:
        """The peer's long-lived worker."""
        if peer not in self._workers:
            self._workers[peer] = Worker(peer, self.python(peer), self._log_dir)
        return self._workers[peer]

    def spawn(self, peer: str) -> Worker:
        """A fresh, separate worker for the peer (W7's concurrent writers)."""
        return Worker(peer, self.python(peer), self._log_dir)

    def versions(self) -> dict[str, str]:
        """Engine package versions, as the workers reported them."""
        return {p: w.version for p, w in self._workers.items()}

    def close(self) -> None:
        """Stop every worker."""
        for w in self._workers.values():
            w.close()
