"""The Space venv: `space-datasets` needs pyarrow 15 and numpy<2, which the project venv cannot have.

Created on first use as `.venv-space` beside `.venv` (ignored by git like every `.venv-*`), and reused
while its requirements are unchanged. Ray 2.9 is there because Space refreshes materialized views only
through Ray; pandas<2.2 because Ray 2.9 data needs a pandas that runs on numpy<2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .workers import REPO

VENV = os.path.join(REPO, ".venv-space")
REQUIREMENTS = ["space-datasets==0.0.11", "pyarrow==15.0.2", "numpy<2", "ray[data]==2.9.1", "pandas<2.2"]
STAMP = os.path.join(VENV, ".bench-requirements")


def python() -> str:
    """The Space venv's interpreter, creating or updating the venv if needed (minutes, the first time)."""
    exe = os.path.join(VENV, "bin", "python")
    wanted = "\n".join(REQUIREMENTS)
    if os.path.exists(exe) and os.path.exists(STAMP):
        with open(STAMP) as f:
            if f.read() == wanted:
                return exe
    base = shutil.which("python3.11") or sys.executable
    print(f"creating {VENV} for space-datasets (a few minutes, once) ...", flush=True)
    if not os.path.exists(exe):
        subprocess.run([base, "-m", "venv", VENV], check=True)
    pip = [exe, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    with open(STAMP, "w") as f:
        f.write(wanted)
    return exe
