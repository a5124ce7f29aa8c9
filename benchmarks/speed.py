"""Speed benchmark: steps per second (SPS) of a whole training run, and its ratio to the raw speed of
stepping the same vectorised envs with random actions, measured in the same process around the run.

    python benchmarks/speed.py --script ppo_clip --env-id Hopper-v4
    python benchmarks/speed.py --script ppo_atari --env-id BreakoutNoFrameskip-v4 --extra='--async-envs'

Raw stepping is timed before and after training and averaged, to bracket drift in machine speed. Nothing
else should run on the machine meanwhile. The figures go to benchmarks/results/speed.jsonl.
"""
import argparse
import dataclasses
import importlib
import os
import resource
import sys
import tempfile
import time

import numpy as np
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import record  # noqa: E402


def raw_steps_per_second(mod, args, steps: int) -> float:
    """Random actions in the envs the run trains on (ppo_atari's --async-envs: subprocesses)."""
    env_id, num_envs, seed = args.env_id, args.num_envs, args.seed
    envs = mod.make_envs(env_id, num_envs, **({"async_envs": True} if getattr(args, "async_envs", False) else {}))
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        envs.step(envs.action_space.sample())
    elapsed = time.perf_counter() - start
    envs.close()
    return (steps // num_envs) * num_envs / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--script", default="ppo_clip")
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--total-timesteps", type=int, default=204_800, help="100 iterations at Table 3's T")
    p.add_argument("--raw-steps", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--extra", default="", help="more flags for the script, e.g. --extra='--bf16'")
    a = p.parse_args()

    mod = importlib.import_module(a.script)
    args = dataclasses.replace(tyro.cli(mod.Args, args=a.extra.split()), env_id=a.env_id,
                               total_timesteps=a.total_timesteps, seed=a.seed, eval_episodes=0)
    raw_before = raw_steps_per_second(mod, args, a.raw_steps)
    os.chdir(tempfile.mkdtemp())  # the run's TensorBoard log is not a result
    sps = mod.main(args)["sps"]
    raw_after = raw_steps_per_second(mod, args, a.raw_steps)
    raw = float(np.mean([raw_before, raw_after]))
    result = {"script": a.script, "env_id": a.env_id, "extra_flags": a.extra, "num_envs": args.num_envs, "num_steps": args.num_steps,
              "num_minibatches": args.num_minibatches, "update_epochs": args.update_epochs,
              "total_timesteps": a.total_timesteps, "seed": a.seed, "train_sps": round(sps),
              "raw_sps_before": round(raw_before), "raw_sps_after": round(raw_after),
              "ratio": round(sps / raw, 3),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # KiB on Linux
              "date": time.strftime("%Y-%m-%d %H:%M")}
    record("speed.jsonl", result)
    print(f"{a.script} {a.env_id}: training {sps:.0f} SPS, raw random-action stepping {raw:.0f} steps/s "
          f"(before {raw_before:.0f}, after {raw_after:.0f}), ratio {sps / raw:.2f}")


if __name__ == "__main__":
    main()
