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
import os
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import sweep  # noqa: E402
from benchmarks.common import CODE_VERSION, record, save_curve  # noqa: E402


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
