"""Learning benchmark: train a script on one or more envs for several seeds and report the mean return of
the last 100 training episodes, mean +- std over seeds, as the paper and CleanRL score a run.

    python benchmarks/learning.py --script ppo_clip --env-id CartPole-v1 --total-timesteps 200000
    python benchmarks/learning.py --script ppo_clip --env-id Hopper-v4 --total-timesteps 1000000
    python benchmarks/learning.py --env-id Hopper-v4 --total-timesteps 1000000 --extra=--no-anneal-clip

The paper-scale sweeps (benchmarks/README.md gives their time on N cores), each also with --smoke:

    python benchmarks/learning.py --script ppo_continuous --total-timesteps 1000000 --address auto --env-id \
        HalfCheetah-v4 Hopper-v4 InvertedDoublePendulum-v4 InvertedPendulum-v4 Reacher-v4 Swimmer-v4 Walker2d-v4
    python benchmarks/learning.py --script ppo_atari --total-timesteps 10000000 --address auto \
        --env-id BreakoutNoFrameskip-v4 PongNoFrameskip-v4 BeamRiderNoFrameskip-v4

Every run is a Ray task (benchmarks/sweep.py): a local Ray on this machine's cores, or the cluster at
--address. The same command again skips the runs that finished and resumes the others from their
checkpoints. The script's final evaluation (deterministic policy, 10 episodes) is recorded beside the
score. Each run's learning curve goes to benchmarks/results/curves/, and each env's summary to
benchmarks/results/learning.jsonl (one line per env for each command that ran something), with the machine
and package versions beside the figures.
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import version

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
sys.path.insert(0, ROOT)
from benchmarks import sweep  # noqa: E402


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
    """(step, value) rows of one TensorBoard scalar; KeyError if the run never logged it."""
    return sweep.scalars(run_dir, [tag])[tag]


def batch_size(script: str, flags: str) -> int:
    """N*T of the script at these flags: a --smoke run's budget, one iteration."""
    import tyro
    args = tyro.cli(__import__(script).Args, args=shlex.split(flags))
    return args.num_envs * args.num_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--script", default="ppo_clip")
    p.add_argument("--env-id", nargs="+", default=["CartPole-v1"], help="one or more; a summary row each")
    p.add_argument("--total-timesteps", type=int, default=200_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--extra", default="", help="more flags for the script, one string: --extra='--a 1 --b'")
    p.add_argument("--cpus-per-run", type=int, default=1, help="Ray CPUs of a run, and its torch --threads")
    p.add_argument("--gpus-per-run", type=float, default=0, help="Ray GPUs of a run (with ppo_atari.py's --cuda)")
    sweep.add_arguments(p)
    a = p.parse_args()

    steps = batch_size(a.script, a.extra) if a.smoke else a.total_timesteps
    extra = f"{a.extra} --eval-episodes 1".strip() if a.smoke else a.extra
    runs = [sweep.Run(a.script, env, steps, seed, extra, a.cpus_per_run, a.gpus_per_run)
            for env in a.env_id for seed in a.seeds]

    def keep_curve(result: dict) -> None:
        if result["exit"] == 0 and not a.smoke:
            save_curve(np.array(result["curve"]).reshape(-1, 2), a.script, result["env_id"], a.extra,
                       result["seed"])

    results = sweep.sweep_from_args(runs, a, CODE_VERSION, keep_curve)
    for env in a.env_id:
        mine = [r for r in results if r["env_id"] == env]
        good = [r for r in mine if r["exit"] == 0]
        if a.smoke or all(r.get("skipped") for r in mine):  # a rerun that ran nothing new records nothing
            continue
        scores = [r["last100"] for r in good]
        summary = {"script": a.script, "env_id": env, "total_timesteps": a.total_timesteps,
                   "seeds": [r["seed"] for r in good], "failed_seeds": [r["seed"] for r in mine if r["exit"] != 0],
                   "extra_flags": a.extra, "last100_per_seed": [round(s, 1) for s in scores],
                   "mean": round(float(np.mean(scores)), 1) if scores else None,
                   "std": round(float(np.std(scores)), 1) if scores else None,
                   "eval_mean_per_seed": [r["eval"] for r in good],
                   "peak_rss_mb": max((r["peak_rss_mb"] for r in good), default=None),
                   "wall_s_per_seed": [r["wall_s"] for r in good],
                   "resumed_at_step_per_seed": [r["resumed_at_step"] for r in good],
                   "nodes": len({r["node"] for r in good}), "date": time.strftime("%Y-%m-%d")}
        record("learning.jsonl", summary)
        print(f"{a.script} {env} {a.total_timesteps} steps: {len(good)} of {len(mine)} seeds finished "
              f"{summary['seeds']}; last-100-episode return {summary['mean']} +- {summary['std']} "
              f"(per seed {summary['last100_per_seed']})" + (f"; FAILED seeds {summary['failed_seeds']}"
                                                             if summary["failed_seeds"] else ""))


if __name__ == "__main__":
    main()
