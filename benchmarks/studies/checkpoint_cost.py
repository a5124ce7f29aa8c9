"""What the default checkpoint interval costs a run: milliseconds per save times saves per run.

    python benchmarks/studies/checkpoint_cost.py               # all four scripts, their default envs
    python benchmarks/studies/checkpoint_cost.py --scripts ppo_atari --saves 50

For each script this trains a short run at its defaults (Table 3 or 5 settings, default env) to get a real
checkpoint and the run's SPS, then times the scripts' `save_checkpoint` (ppo_run.py's) on that checkpoint
`--saves` times (the temporary file, the fsync and the rename included). A default run of `total_timesteps`
steps at that SPS takes `total_timesteps / SPS` seconds and saves once every CHECKPOINT_MINUTES and once at its
end; the cost is that many saves times the median time of one. An SPS difference between two runs cannot
resolve 1% on these machines, so the cost is computed, not read off two runs' SPS. Rows go to
benchmarks/results/checkpoint_cost.jsonl.
"""
import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import ppo_run  # noqa: E402
from benchmarks.common import record  # noqa: E402

ITERATIONS = {"ppo_atari": 5}  # iterations of the short run that makes the checkpoint and measures SPS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scripts", nargs="+", default=["ppo_clip", "ppo_kl_adaptive", "ppo_continuous", "ppo_atari"])
    p.add_argument("--saves", type=int, default=20, help="timed saves per script")
    a = p.parse_args()
    for script in a.scripts:
        mod = __import__(script)
        defaults = mod.Args()
        batch = defaults.num_envs * defaults.num_steps
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = os.path.join(tmp, "run")
            args = dataclasses.replace(defaults, total_timesteps=batch * ITERATIONS.get(script, 5), eval_episodes=0,
                                       checkpoint_every=1, run_dir=run_dir)
            summary = mod.main(args)
            ckpt = torch.load(os.path.join(run_dir, "checkpoint.pt"))
            path = os.path.join(tmp, "timed.pt")
            times = []
            for _ in range(a.saves):
                start = time.perf_counter()
                ppo_run.save_checkpoint(ckpt, path)
                times.append(time.perf_counter() - start)
            size_mb = os.path.getsize(path) / 2**20
        ms = 1000 * float(np.median(times))
        run_s = defaults.total_timesteps / summary["sps"]
        saves = math.floor(run_s / (60 * ppo_run.CHECKPOINT_MINUTES)) + 1  # the periodic ones and the last
        row = {"script": script, "env_id": defaults.env_id, "total_timesteps": defaults.total_timesteps,
               "checkpoint_mb": round(size_mb, 2), "ms_per_save_median": round(ms, 2),
               "ms_per_save_max": round(1000 * max(times), 2), "short_run_sps": round(summary["sps"]),
               "default_run_minutes": round(run_s / 60, 1), "saves_per_run": saves,
               "cost_s": round(saves * ms / 1000, 2), "cost_percent": round(100 * saves * ms / 1000 / run_s, 4),
               "date": time.strftime("%Y-%m-%d %H:%M")}
        record("checkpoint_cost.jsonl", row)
        print(f"{script} ({defaults.env_id}, {defaults.total_timesteps:,} steps): {size_mb:.2f} MB, {ms:.1f} ms a save "
              f"x {saves} saves in a {run_s / 60:.0f}-minute run = {saves * ms:.0f} ms, "
              f"{100 * saves * ms / 1000 / run_s:.3f}% of the run", flush=True)


if __name__ == "__main__":
    main()
