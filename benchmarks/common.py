"""What the benchmark tools share, imported rather than run: where results go (benchmarks/results/), the commit,
machine and package versions a figure was measured with, appending a measurement to a results file, and the
learning-curve files that learning.py and tb_curve.py write and plot.py reads.

    from benchmarks.common import record     # with the repository root on sys.path, as every tool puts it
"""
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import version

import numpy as np

from benchmarks import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def code_version() -> str:
    """The commit the scripts ran at, taken when this module loads (runs outlast later commits), with
    "+modified" when a tracked .py file outside tests/ differed from it (a new, untracked file, or a test,
    changes no run)."""
    def git(*cmd):
        return subprocess.run(["git", "-C", ROOT, *cmd], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    modified = git("status", "--porcelain", "--untracked-files=no", "--", "*.py", ":!tests/*")
    return (commit + ("+modified" if modified else "")) if commit else "unknown"


CODE_VERSION = code_version()


def environment() -> dict:
    """The machine and the versions a figure was measured with."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"commit": CODE_VERSION, "machine": f"{cpu}, {os.cpu_count()} cores, {platform.machine()}",
            "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ["torch", "gymnasium", "numpy", "mujoco", "ale-py"]}}


def record(filename: str, row: dict) -> None:
    """Append one measurement, with the machine, the versions and the command that made it, to results/."""
    # as typed from the repository root, where the READMEs run every tool: a study lies a folder deeper
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    row = {**row, **environment(), "command": f"python {script} " + shlex.join(sys.argv[1:])}
    with open(os.path.join(RESULTS, filename), "a") as f:
        f.write(json.dumps(row) + "\n")


def curve_name(script: str, env_id: str, extra: str, seed: int) -> str:
    """File name of one run's learning curve; extra flags, if any, become part of it."""
    flags = "_".join(f[2:] if f.startswith("--") else f for f in extra.split())
    return f"{script}_{file_safe(env_id)}{'_' + flags if flags else ''}_seed{seed}.csv"


def file_safe(env_id: str) -> str:
    """An env id as part of a file name: `ALE/Pong-v5` becomes `ALE-Pong-v5`."""
    return env_id.replace("/", "-")


def save_curve(curve: np.ndarray, script: str, env_id: str, extra: str, seed: int) -> str:
    """Write one run's (step, episodic return) rows to results/curves/, where plot.py reads them."""
    os.makedirs(os.path.join(RESULTS, "curves"), exist_ok=True)
    path = os.path.join(RESULTS, "curves", curve_name(script, env_id, extra, seed))
    np.savetxt(path, curve, delimiter=",", header="global_step,episodic_return", comments="", fmt=["%d", "%.2f"])
    return path


def logged(run_dir: str, tag: str) -> np.ndarray:
    """(step, value) rows of one TensorBoard scalar; KeyError if the run never logged it."""
    return sweep.scalars(run_dir, [tag])[tag]
