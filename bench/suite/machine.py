"""The machine a run happened on, for the report: CPU, cores, memory, disk, OS, load."""

from __future__ import annotations

import os
import platform
import shutil
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def describe(workdir: str) -> dict[str, Any]:
    """Facts about this machine (psutil when present, /proc otherwise)."""
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / (1 << 30):.1f} GiB"
    except ImportError:
        memory = "?"
    disk = shutil.disk_usage(workdir)
    load = os.getloadavg()
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores",
        "memory": memory,
        "disk free at start": f"{disk.free / (1 << 30):.0f} GiB of {disk.total / (1 << 30):.0f} GiB ({workdir})",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load),
    }
