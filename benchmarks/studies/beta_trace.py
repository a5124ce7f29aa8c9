"""d and beta over a ppo_kl_adaptive.py run: where Section 4's rule takes beta, and whether it needs bounds.

    python benchmarks/studies/beta_trace.py --env-id Hopper-v4 --total-timesteps 1000000
    python benchmarks/studies/beta_trace.py --env-id Hopper-v4 --total-timesteps 409600 --extra='--kl-target 1e-6'

Runs the script once (one torch thread), reads `losses/kl` (d, the batch's mean KL after the K epochs) and
`charts/beta` (the beta that update used) from its TensorBoard log, prints them at every tenth of the run,
and appends a summary (beta's range and median, the last step where it was at least 0.01 and its lowest value
until then, how often the rule halved and doubled it, how the run ended) to
benchmarks/results/beta_trace.jsonl.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks.common import file_safe, logged, record  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--total-timesteps", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--extra", default="", help="more flags for the script, one string: --extra='--kl-target 1e-6'")
    a = p.parse_args()
    run_dir = os.path.join(ROOT, "benchmarks", "out", "runs",
                           f"{file_safe(a.env_id)}__beta_trace{int(time.time())}__{a.seed}")
    cmd = [sys.executable, os.path.join(ROOT, "ppo_kl_adaptive.py"), "--env-id", a.env_id, "--seed", str(a.seed),
           "--total-timesteps", str(a.total_timesteps), "--run-dir", run_dir, "--eval-episodes", "0", *a.extra.split()]
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    beta, kl = logged(run_dir, "charts/beta"), logged(run_dir, "losses/kl")
    target = float(a.extra.split("--kl-target")[1].split()[0]) if "--kl-target" in a.extra else 0.01
    print(f"{'step':>9} {'d':>10} {'d/d_targ':>9} {'beta':>10}")
    for i in np.unique(np.linspace(0, len(beta) - 1, 11).astype(int)):
        print(f"{int(beta[i, 0]):>9} {kl[i, 1]:>10.2e} {kl[i, 1] / target:>9.2f} {beta[i, 1]:>10.2e}")
    ratios = beta[1:, 1] / beta[:-1, 1]
    row = {"env_id": a.env_id, "total_timesteps": a.total_timesteps, "seed": a.seed, "extra_flags": a.extra,
           "kl_target": target, "iterations_logged": len(beta), "exit_code": result.returncode,
           "error": errors[0] if errors else None, "beta_min": float(beta[:, 1].min()),
           "beta_max": float(beta[:, 1].max()), "beta_last": float(beta[-1, 1]),
           "beta_median": float(np.median(beta[:, 1])),
           # where the rule's final halving run begins: beta's range before it, and the share of the run
           "last_step_beta_at_least_0.01": int(beta[np.flatnonzero(beta[:, 1] >= 0.01)[-1], 0]),
           "beta_min_until_then": float(beta[: np.flatnonzero(beta[:, 1] >= 0.01)[-1] + 1, 1].min()),
           "halvings": int(np.sum(np.isclose(ratios, 0.5))), "doublings": int(np.sum(np.isclose(ratios, 2.0))),
           "kept": int(np.sum(np.isclose(ratios, 1.0))), "d_median": float(np.median(kl[:, 1])),
           "d_last_tenth_median": float(np.median(kl[-max(1, len(kl) // 10):, 1])),
           "wall_s": round(time.time() - start), "date": time.strftime("%Y-%m-%d %H:%M")}
    record("beta_trace.jsonl", row)
    print(f"beta from {row['beta_min']:.2e} to {row['beta_max']:.2e}, last {row['beta_last']:.2e}; "
          f"{row['halvings']} halvings, {row['doublings']} doublings, {row['kept']} kept; exit {result.returncode}"
          + (f": {errors[0]}" if errors else ""))


if __name__ == "__main__":
    main()
