"""Learning benchmark: train a script on one env for several seeds and report the mean return of the last
100 training episodes, mean +- std over seeds, as the paper and CleanRL score a run.

    python benchmarks/learning.py --script ppo_clip --env-id CartPole-v1 --total-timesteps 200000
    python benchmarks/learning.py --script ppo_clip --env-id Hopper-v4 --total-timesteps 1000000
    python benchmarks/learning.py --env-id Hopper-v4 --total-timesteps 1000000 --extra=--no-anneal-clip

The script's final evaluation (deterministic policy, 10 episodes) is recorded beside the score.
Seeds run as separate processes, `--jobs` at a time, each on one torch thread. Each run's learning curve
goes to benchmarks/results/curves/, the summary to benchmarks/results/learning.jsonl (one line a run of
this command), with the machine and package versions beside the figures.
"""
import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def code_version() -> str:
    """The commit the scripts ran at, taken when this module loads (runs outlast later commits), with
    "+modified" when a tracked .py file differed from it (a new, untracked file changes no run)."""
    def git(*cmd):
        return subprocess.run(["git", "-C", ROOT, *cmd], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    modified = git("status", "--porcelain", "--untracked-files=no", "--", "*.py")
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
    script = os.path.basename(sys.argv[0])
    row = {**row, **environment(), "command": f"python benchmarks/{script} " + shlex.join(sys.argv[1:])}
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
    """(step, value) rows of one TensorBoard scalar."""
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return np.array([(e.step, e.value) for e in acc.Scalars(tag)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--script", default="ppo_clip")
    p.add_argument("--env-id", default="CartPole-v1")
    p.add_argument("--total-timesteps", type=int, default=200_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--jobs", type=int, default=2, help="runs at once; this machine has 2 cores")
    p.add_argument("--extra", default="", help="more flags for the script, one string: --extra='--a 1 --b'")
    a = p.parse_args()

    tag = f"bench{int(time.time())}"
    workdir = os.path.join(RESULTS, "..", "out")
    os.makedirs(workdir, exist_ok=True)

    def run(seed: int) -> str:
        run_dir = os.path.join(workdir, "runs", f"{file_safe(a.env_id)}__{a.script}-{tag}__{seed}")
        cmd = [sys.executable, os.path.join(ROOT, f"{a.script}.py"), "--env-id", a.env_id, "--seed", str(seed),
               "--total-timesteps", str(a.total_timesteps), "--exp-name", f"{a.script}-{tag}", "--run-dir", run_dir,
               *a.extra.split()]
        with open(os.path.join(workdir, f"{a.script}_{file_safe(a.env_id)}_{seed}.log"), "w") as log:
            subprocess.run(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, check=True)
        return run_dir

    start = time.time()
    with ThreadPoolExecutor(a.jobs) as pool:
        run_dirs = list(pool.map(run, a.seeds))
    scores, evals = [], []
    for seed, run_dir in zip(a.seeds, run_dirs):
        curve = logged(run_dir, "charts/episodic_return")
        scores.append(float(curve[-100:, 1].mean()))
        evals.append(float(logged(run_dir, "eval/episodic_return")[-1, 1]))
        save_curve(curve, a.script, a.env_id, a.extra, seed)
    summary = {"script": a.script, "env_id": a.env_id, "total_timesteps": a.total_timesteps, "seeds": a.seeds,
               "extra_flags": a.extra, "last100_per_seed": [round(s, 1) for s in scores],
               "mean": round(float(np.mean(scores)), 1), "std": round(float(np.std(scores)), 1),
               "eval_mean_per_seed": [round(e, 1) for e in evals],
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),  # largest run
               "wall_s": round(time.time() - start), "date": time.strftime("%Y-%m-%d")}
    record("learning.jsonl", summary)
    print(f"{a.script} {a.env_id} {a.total_timesteps} steps, seeds {a.seeds}: "
          f"last-100-episode return {summary['mean']} +- {summary['std']} (per seed {summary['last100_per_seed']})")


if __name__ == "__main__":
    main()
