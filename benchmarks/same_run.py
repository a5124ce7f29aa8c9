"""Does a change leave learning alone? The same short runs in two checkouts, compared exactly.

    git worktree add /tmp/before <commit>                   # the code before the change
    python benchmarks/same_run.py --before /tmp/before      # this checkout against it

Each case trains one script for a few iterations with a fixed seed, in both checkouts, in a fresh
process each, with a checkpoint at every iteration and the final model saved. The TensorBoard scalars
(all tags but charts/SPS, which is a speed) and every tensor and number of the final checkpoint and the
final model must be equal to the bit. Keys that name the run rather than its learning (the run folder,
W&B's id, the video counter) and flags that one checkout has and the other lacks are listed, not compared.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.sweep import scalars  # noqa: E402

SMALL = ["--num-envs", "2", "--num-steps", "128", "--num-minibatches", "4", "--update-epochs", "3",
         "--total-timesteps", "1024", "--eval-episodes", "2"]
CASES = [("ppo_clip", "CartPole-v1", SMALL), ("ppo_clip", "Hopper-v4", SMALL),
         ("ppo_kl_adaptive", "CartPole-v1", SMALL), ("ppo_kl_adaptive", "Hopper-v4", SMALL),
         ("ppo_continuous", "Hopper-v4", SMALL),
         ("ppo_atari", "BreakoutNoFrameskip-v4", ["--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2",
                                                  "--update-epochs", "2", "--total-timesteps", "384",
                                                  "--eval-episodes", "1", "--no-cuda"])]
NOT_LEARNING = {"wandb_id", "env0_episodes", "path"}


def train(checkout: str, script: str, env_id: str, flags: list, folder: str) -> None:
    cmd = [sys.executable, os.path.join(checkout, f"{script}.py"), "--env-id", env_id, "--seed", "3",
           "--run-dir", folder, "--checkpoint-every", "1", "--save-model", "--threads", "1", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(folder))
    if done.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")


def differences(a, b, where: str = "") -> list:
    """The places where two nested checkpoints differ, exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for k in sorted(set(a) | set(b), key=str):
            if k in NOT_LEARNING:
                continue
            if k not in a or k not in b:
                found.append(f"{where}/{k}: only in {'after' if k in b else 'before'}")
            else:
                found += differences(a[k], b[k], f"{where}/{k}")
        return found
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} and {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if torch.is_tensor(a) and torch.is_tensor(b):
        return [] if a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) else [f"{where}: tensors differ"]
    return [] if a == b else [f"{where}: {a!r} and {b!r}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="a checkout of the code before the change")
    p.add_argument("--after", default=ROOT, help="the checkout after it (default: this one)")
    p.add_argument("--scripts", nargs="+", default=sorted({c[0] for c in CASES}))
    a = p.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for script, env_id, flags in (c for c in CASES if c[0] in a.scripts):
            runs = {}
            for side, checkout in [("before", a.before), ("after", a.after)]:
                folder = os.path.join(tmp, f"{side}-{script}-{env_id}")
                train(checkout, script, env_id, flags, folder)
                logged = {t: v for t, v in scalars(folder, None).items() if t != "charts/SPS"}
                runs[side] = (logged, torch.load(os.path.join(folder, "checkpoint.pt")),
                              torch.load(os.path.join(folder, f"{script}.pt")))
            (s0, c0, m0), (s1, c1, m1) = runs["before"], runs["after"]
            differ = sorted(t for t in set(s0) | set(s1)
                            if t not in s0 or t not in s1 or not np.array_equal(s0[t], s1[t], equal_nan=True))
            found = [f"scalars differ: {differ}"] if differ else []
            args0, args1 = c0.pop("args"), c1.pop("args")
            m0.pop("args"), m1.pop("args")
            only = sorted(set(args0) ^ set(args1))
            found += [f"flag {k}: {args0[k]!r} and {args1[k]!r}" for k in set(args0) & set(args1)
                      if k not in ("run_dir",) and args0[k] != args1[k]]
            found += differences(c0, c1, "checkpoint") + differences(m0, m1, "model file")
            points = sum(len(v) for v in s0.values())
            verdict = "identical" if not found else "DIFFERENT: " + "; ".join(found)
            print(f"{script} on {env_id}: {len(s0)} tags, {points} scalar points, checkpoint and model file: "
                  f"{verdict}" + (f" (flags in one checkout only, not compared: {', '.join(only)})" if only else ""),
                  flush=True)
            failed += bool(found)
    sys.exit(1 if failed else 0)



if __name__ == "__main__":
    main()
