"""ppo_atari.py's whole-run speed and peak GPU memory on a GPU machine (issue: Atari on a GPU).

    python benchmarks/studies/gpu_atari.py --steps 3072          # a smoke run first (seconds)
    python benchmarks/studies/gpu_atari.py                       # Breakout, Table 5, 100k steps per variant

Runs `ppo_atari.main` in this process once per variant (sync or async envs, float32 or --bf16) at Table 5's
settings (8 envs), with no evaluation, and records its SPS over the whole run and, on CUDA, the peak GPU
memory torch allocated. It runs on a CPU as well, where it reports no memory. Rows go to
benchmarks/results/gpu_atari.jsonl.
"""
import argparse
import dataclasses
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import ppo_atari  # noqa: E402
from benchmarks.common import record  # noqa: E402

VARIANTS = {"sync": {}, "async": {"async_envs": True}, "sync-bf16": {"bf16": True},
            "async-bf16": {"async_envs": True, "bf16": True}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--env-id", default="BreakoutNoFrameskip-v4")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    cuda = torch.cuda.is_available()
    for name in a.variants:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp:
            args = dataclasses.replace(ppo_atari.Args(), env_id=a.env_id, total_timesteps=a.steps, eval_episodes=0,
                                       threads=a.threads, run_dir=os.path.join(tmp, "run"), checkpoint_every=0,
                                       **VARIANTS[name])
            summary = ppo_atari.main(args)
        row = {"variant": name, "env_id": a.env_id, "steps": summary["global_step"], "sps": round(summary["sps"]),
               "device": torch.cuda.get_device_name() if cuda else "cpu", "threads": a.threads,
               "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
               "date": time.strftime("%Y-%m-%d")}
        print(f"{name:11s} {row['sps']:>6} SPS  peak GPU memory {row['peak_gpu_mib']} MiB  ({row['device']})",
              flush=True)
        record("gpu_atari.jsonl", row)


if __name__ == "__main__":
    main()
