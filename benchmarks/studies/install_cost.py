"""What video and tracking add to a fresh install: each optional package's size and install time.

    python benchmarks/studies/install_cost.py

In a new virtual environment under a temporary folder, this installs requirements.txt without the packages
under test, then adds each of them in turn (pip's cache off, so every wheel is downloaded as on a fresh
machine). For each step it records the wall time of `pip install` and the growth of the environment's folder
on disk. Download time depends on the network, so the time is the figure of that day and that registry.
Rows go to benchmarks/results/install_cost.jsonl.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks.common import record  # noqa: E402

OPTIONAL = ["moviepy", "pygame-ce", "wandb"]  # in requirements.txt for --capture-video and --track


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
               if not os.path.islink(os.path.join(d, f)))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options; --help installs nothing
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        lines = [line.split("#")[0].strip() for line in f]
    pins = [line for line in lines if line]
    name = lambda pin: re.split(r"[\[=<>]", pin)[0].lower()  # noqa: E731
    base = [pin for pin in pins if name(pin) not in OPTIONAL]
    steps = [("the rest of requirements.txt", base)] + [(pin, [pin]) for pin in pins if name(pin) in OPTIONAL]
    with tempfile.TemporaryDirectory() as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--no-cache-dir", "-q"]
        for label, packages in steps:
            before, start = folder_bytes(venv), time.time()
            subprocess.run(pip + packages, check=True)
            seconds, added = time.time() - start, folder_bytes(venv) - before
            print(f"{label:32s} {added / 2**20:8.1f} MiB {seconds:7.1f} s", flush=True)
            record("install_cost.jsonl", {"packages": label, "added_mib": round(added / 2**20, 1),
                                          "install_seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d")})


if __name__ == "__main__":
    main()
